"""Ray job entrypoint: `ray job submit --working-dir . -- python jobs/rlaif_job.py run
conf/default.yaml [key=value ...]` (the same as `python -m rlaif_ray.cli ...`)."""

from rlaif_ray.cli import console_main

if __name__ == "__main__":
    console_main()
