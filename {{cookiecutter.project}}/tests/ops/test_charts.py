"""The report's Mermaid charts: what GitHub draws in the comment, with every number in place."""

from tumor_classifier.ops import charts

CHAMPION = {"accuracy": 0.9, "roc_auc": 0.95, "log_loss": 1.25}
CHALLENGER = {"accuracy": 0.93, "roc_auc": 0.97, "log_loss": 0.5}


def series(chart: str) -> list[str]:
    return [line.strip() for line in chart.splitlines() if line.strip().startswith(("bar", "line"))]


def test_metrics_are_bars_of_the_workspace_under_a_line_of_the_champion() -> None:
    chart = charts.metrics(CHAMPION, CHALLENGER, "main")
    lines = chart.splitlines()
    assert lines[0] == "```mermaid"
    assert lines[-1] == "```"
    assert lines[1].startswith('%%{init: {"themeVariables": {"xyChart": {"plotColorPalette"')
    assert lines[2] == "xychart-beta"
    assert 'title "Test-set metrics: workspace (blue bars), main (orange line)"' in chart
    assert 'x-axis ["accuracy", "roc_auc", "log_loss"]' in chart
    assert 'y-axis "value" 0 --> 1.25' in chart  # log loss goes past 1
    assert series(chart) == ["bar [0.93, 0.97, 0.5]", "line [0.9, 0.95, 1.25]"]


def test_a_first_model_has_bars_alone() -> None:
    chart = charts.metrics({}, CHALLENGER, "main")
    assert "workspace (main has none)" in chart
    assert series(chart) == ["bar [0.93, 0.97, 0.5]"]
    assert charts.metrics(CHAMPION, {}, "main") == ""


def test_a_roc_curve_is_its_best_rate_up_to_each_step() -> None:
    roc = [(0.0, 0.0), (0.0, 0.5), (0.1, 0.8), (0.5, 0.95), (1.0, 1.0)]
    ys = charts.resample(roc, after=False)
    assert len(ys) == 21
    assert ys[:4] == [0.5, 0.5, 0.8, 0.8]  # x = 0, 0.05, 0.1, 0.15
    assert ys[10] == 0.95
    assert ys[-1] == 1.0


def test_a_precision_recall_curve_is_its_interpolated_precision() -> None:
    pr = [(0.0, 1.0), (0.5, 0.9), (0.6, 0.95), (1.0, 0.4)]
    ys = charts.resample(pr, after=True)
    assert ys[0] == 1.0
    assert ys[10] == 0.95  # recall 0.5: the best precision at recall 0.5 or more
    assert ys[-1] == 0.4


def test_curves_name_their_colours_in_the_order_drawn() -> None:
    points = [(0.0, 0.0), (1.0, 1.0)]
    both = charts.curve("ROC", ("fpr", "tpr"), points, points, "main")
    assert 'title "ROC: workspace (blue), main (orange)"' in both
    assert 'x-axis "fpr" 0 --> 1' in both
    assert len(series(both)) == 2
    alone = charts.curve("ROC", ("fpr", "tpr"), points, [], "main")
    assert 'title "ROC: main (blue)"' in alone
    assert charts.curve("ROC", ("fpr", "tpr"), [], [], "main") == ""


def test_quotes_cannot_break_out_of_a_title() -> None:
    chart = charts.metrics({'say "hi"': 1.0}, {'say "hi"': 1.0}, 'v"1')
    assert "\"say 'hi'\"" in chart
    assert "v'1" in chart


def test_drawings_hold_every_chart_with_data() -> None:
    roc = {"roc": [(0.0, 0.0), (1.0, 1.0)]}
    assert len(charts.drawings(CHAMPION, CHALLENGER, roc, roc, "main")) == 2
    assert charts.drawings({}, {}, {}, {}, "main") == []
