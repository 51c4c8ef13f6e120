"""sdtp_lib.eval.figures on hand-made results of the shapes the evaluations return (the notebooks' pipeline test
draws them from real runs): partial categories, a scorer without a speedup, one task, one length."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from sdtp_lib.eval import figures as F  # noqa: E402


def _texts(fig):
    return {t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.texts + [ax.title]}


def test_longbench_figure():
    cat = lambda v: {"score": v, "n_tasks": 1, "of": 3}  # noqa: E731
    res = {"config": {"model": {"id": "m"}}, "dense": "dense", "scorers": {
        "dense": {"categories": {"few-shot": cat(40.0), "code": cat(20.0)}, "average": 30.0,
                  "category_average": 30.0, "prefill_speedup_vs_dense": None},
        "sdtp:norm": {"categories": {"few-shot": cat(35.0)}, "average": 35.0, "category_average": 35.0,
                      "prefill_speedup_vs_dense": 1.4},
        "sdtp:random": {"categories": {}, "average": None, "category_average": None,
                        "prefill_speedup_vs_dense": None}}}
    fig = F.longbench_figure(res)
    assert {"few-shot", "code", "average"} <= _texts(fig)
    (legend,) = fig.legends  # one legend below both panels, every scorer once
    assert [t.get_text() for t in legend.get_texts()] == ["dense", "sdtp:norm", "sdtp:random"]
    speed = fig.axes[1]
    points = sorted(tuple(c.get_offsets()[0]) for c in speed.collections)
    assert points == [(1.0, 30.0), (1.4, 35.0)]  # dense at 1x; sdtp:random has no score: no point
    assert len({c.get_paths()[0].vertices.tobytes() for c in speed.collections}) == 2  # a marker of its own each
    with pytest.raises(ValueError, match="no scorers"):
        F.longbench_figure({**res, "scorers": {}})


def test_lmeval_figure():
    r = lambda acc, groups=None: {"accuracy": acc, "config": {"num_fewshot": 5},  # noqa: E731
                                  "lm_eval": {"groups": groups}}
    fig = F.lmeval_figure({"dense": r({"sdtp_copa": 0.5, "sdtp_paper": 0.5}, {"sdtp_paper": {}}),
                           "sdtp:norm": r({"sdtp_copa": 0.25})})
    assert {"copa", "mean", "lm-eval, 5-shot accuracy per task"} <= _texts(fig)
    (legend,) = fig.legends  # below the bars, not over them
    assert [t.get_text() for t in legend.get_texts()] == ["dense", "sdtp:norm"] and fig.axes[0].get_legend() is None


def test_accuracy_vs_length_figure():
    summary = [{"task": t, "length": n, "layout": lay, "scorer": s, "accuracy": a, "n": 2}
               for t in ("passkey", "kv_retrieval") for n, a in ((1024, 1.0), (2048, 0.5))
               for lay in ("question_first", "question_last") for s in ("dense", "sdtp:norm")]
    fig = F.accuracy_vs_length_figure(summary)
    assert len(fig.axes) == 3 and {"all tasks", "passkey", "kv_retrieval", "1K", "2K"} <= _texts(fig)
    assert len(F.accuracy_vs_length_figure(summary[:2]).axes) == 1  # one task: the mean panel only
    assert F.file_stem("sdtp-low@0.8:/runs/x y") == "sdtp-low@0.8__runs_x_y"


def test_accuracy_vs_length_by_layout_averages_over_tasks():
    acc = {("passkey", "question_first"): 0.2, ("passkey", "question_last"): 0.8,
           ("kv_retrieval", "question_first"): 0.4, ("kv_retrieval", "question_last"): 1.0}
    summary = [{"task": t, "length": n, "layout": lay, "scorer": "dense", "accuracy": acc[t, lay], "n": 2}
               for (t, lay) in acc for n in (1024, 4096)]
    fig = F.accuracy_vs_length_figure(summary, by="layout")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["all layouts", "question_first", "question_last"]
    ys = [list(ax.lines[0].get_ydata()) for ax in fig.axes]
    assert ys == [pytest.approx([60.0, 60.0]), pytest.approx([30.0, 30.0]), pytest.approx([90.0, 90.0])]
    with pytest.raises(ValueError, match="by must be"):
        F.accuracy_vs_length_figure(summary, by="scorer")


@pytest.mark.parametrize("name", ["dense", "sdtp@0.8+R0.02+W96+M256:hybrid", "sdtp@0.8+R0.02+W96+M256:" + "x" * 40])
def test_accuracy_vs_length_legend_stays_inside_the_figure(name):
    summary = [{"task": "passkey", "length": n, "layout": lay, "scorer": s, "accuracy": 0.5, "n": 2}
               for n in (1024, 2048) for lay in ("question_first", "question_last") for s in ("dense", name)]
    fig = F.accuracy_vs_length_figure(summary, by="layout")
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox)  # no label cut at the edge
    assert all(ax.get_window_extent().x1 <= box.x0 + 1 for ax in fig.axes)  # and no panel under the legend
