"""`rlaif-ray review ...` as a user types them, each in its own process."""

import json
import signal
import subprocess
import sys

import requests

from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS


def review(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "rlaif_ray.cli", "review", *map(str, args)],
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_serve_prints_a_tokened_address_on_loopback_and_serves_it(pointwise_run):
    run_dir, _ = pointwise_run
    server = subprocess.Popen([sys.executable, "-m", "rlaif_ray.cli", "review", "serve",
                               str(run_dir), "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == f"review page for {run_dir}:\n"
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url and len(url) < 78
        assert requests.get(url.split("?")[0], timeout=30).status_code == 403
        page = requests.get(url, timeout=30)
        assert page.status_code == 200 and "Prompt of a" in page.text
        server.send_signal(signal.SIGINT)  # Ctrl-C: a quiet stop
        assert server.wait(timeout=30) == 0
        assert "Traceback" not in server.stderr.read()
    finally:
        server.kill()
        server.wait(timeout=30)


def test_calibrate_and_labelstudio_files(pointwise_run, tmp_path):
    run_dir, _ = pointwise_run
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"review_id": "0:a", "scores": dict.fromkeys(
        DEFAULT_DIMENSIONS, 3)}) + "\n")
    merged = review("import", run_dir, answers, "--reviewer", "dee")
    assert merged.returncode == 0 and merged.stdout == "merged 1 human verdicts\n"
    done = review("calibrate", run_dir)
    assert done.returncode == 0, done.stderr
    *table, written = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in table)
    assert written == f"written to {run_dir / 'review' / 'calibration.json'}"
    report = json.loads((run_dir / "review" / "calibration.json").read_text())
    assert report["j1"]["factual_accuracy"]["bias"] == -1.0  # j1 said 2, dee 3
    tasks = tmp_path / "ls.json"
    out = review("export", run_dir, "--format", "labelstudio", "--out", tasks)
    assert out.returncode == 0 and out.stdout.startswith("2 Label Studio tasks written")
    assert (tmp_path / "ls.xml").is_file()
    bad = review("import", run_dir, tmp_path / "missing.jsonl")
    assert bad.returncode != 0 and "missing.jsonl does not exist" in bad.stderr
