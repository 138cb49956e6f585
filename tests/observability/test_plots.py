"""The run's plots: titled with the run, integer iteration ticks, fixed ranges where the
quantity has one, stage times stacked."""

import math

import matplotlib.pyplot as plt
import pytest

from rlaif_ray.judge.stats import length_bias
from rlaif_ray.metrics import plot_figures, write_plots
from rlaif_ray.storage import StoragePath


def rows(n=5):
    return [{"iteration": k, "reward_mean": 0.955 + 0.001 * k, "kl": 0.01 * k,
             "kept_fraction": 0.96, "position_bias": None if k == 0 else 0.55,
             "length_bias": 0.1 * k, "judge_s": 3.0, "train_s": 2.0, "sync_s": 0.5,
             "iteration_s": 5.6} for k in range(n)]


def test_plots_read_at_a_glance():
    figures = plot_figures("run-7", rows())
    try:
        assert set(figures) == {"reward", "kl", "kept_fraction", "biases", "stage_times"}
        for name, fig in figures.items():
            ax = fig.axes[0]
            assert ax.get_title().startswith("run-7: "), name
            ticks = [t for t in ax.get_xticks() if -0.5 <= t <= 4.5]
            assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
        # a reward of 0.955-0.959 is drawn on [0, 1], not zoomed into a cliff
        assert figures["reward"].axes[0].get_ylim() == (0.0, 1.0)
        assert figures["kept_fraction"].axes[0].get_ylim() == (0.0, 1.0)
        assert figures["biases"].axes[0].get_ylim() == (-1.0, 1.0)
        bars = figures["stage_times"].axes[0].patches
        tops = {round(b.get_x() + b.get_width() / 2): b.get_y() + b.get_height() for b in bars}
        assert tops == {k: pytest.approx(5.5) for k in range(5)}  # 3 + 2 + 0.5, stacked
    finally:
        for fig in figures.values():
            plt.close(fig)


def test_judged_scores_per_dimension_get_their_own_plot():
    scored = [{**r, "dimension_scores": {"safety": 2 + r["iteration"], "completeness": 5}}
              for r in rows(3)]
    figures = plot_figures("run-7", scored)
    try:
        ax = figures["dimensions"].axes[0]
        assert [line.get_label() for line in ax.get_lines()] == ["safety", "completeness"]
        assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([2, 3, 4])
        assert ax.get_ylim() == (1, 10)  # the rubric's scale
    finally:
        for fig in figures.values():
            plt.close(fig)


def test_plot_files_are_written(tmp_path):
    paths = write_plots(StoragePath.of(tmp_path / "run"), rows(3))
    assert sorted(p.name for p in paths) == ["biases.png", "kept_fraction.png", "kl.png",
                                             "reward.png", "stage_times.png"]
    assert all(p.size() > 1000 for p in paths)


def test_a_run_without_rows_has_no_plots(tmp_path):
    assert write_plots(StoragePath.of(tmp_path / "run"), []) == []
    assert not (tmp_path / "run" / "plots").exists()


def test_length_bias_is_the_correlation_of_length_with_reward():
    assert length_bias([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert length_bias([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    assert length_bias([1, 2, 3, 4], [0.2, 0.4, 0.4, 0.2]) == pytest.approx(0.0)
    assert length_bias([3, 3, 3], [0.1, 0.5, 0.9]) is None  # lengths do not vary
    assert length_bias([1, 2], [0.0, 1.0]) is None
    assert not math.isnan(length_bias([1, 5, 2, 8], [0.3, 0.1, 0.9, 0.4]))
