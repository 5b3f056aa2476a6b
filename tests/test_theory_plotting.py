"""The exact-tier figure functions draw from the package's own tables and write PNG files."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from talr_theory.plotting.exact import (  # noqa: E402
    plot_bounds_along_lambda,
    plot_envelope,
    plot_lambda_max,
    save_figure,
)
from talr_theory.theory.lambda_max import fit_lambda_max_scaling, lambda_max_experiment  # noqa: E402
from talr_theory.theory.scenario import scenario_step_curve  # noqa: E402
from tests.helpers import assert_png_drawn  # noqa: E402


def test_figures_are_written(tmp_path):
    curves = pd.concat([scenario_step_curve(0, s=2, p1=p1, lams=np.logspace(-1, 2, 7))
                        for p1 in ("exact", "mismodeled")])
    # The TV bound curve equals Aλ + Bλ²/8 (the quadratic behind the predicted λ_max).
    tv = curves[(curves.quantity == "tv_upper") & (curves.p1 == "mismodeled")]["delta_L"].to_numpy()
    quad = curves[(curves.quantity == "quadratic_upper") & (curves.p1 == "mismodeled")]["delta_L"].to_numpy()
    assert np.allclose(tv, quad, rtol=1e-10)
    frame = lambda_max_experiment([0, 1], s_values=(1, 2), eps_values=(1e-5, 1e-4))
    fits = {("exact", m): fit_lambda_max_scaling(frame[frame.method == m], n_boot=50) for m in ("sft", "talr")}
    points = pd.DataFrame([{"lam": lam, "delta_star": d, "delta_L": 0.1 * d + d**2 * lam}
                           for lam in (1.0, 2.0, 4.0) for d in (0.1, 0.2, 0.3)])
    paths = [
        save_figure(plot_bounds_along_lambda(curves), "bounds", tmp_path),
        save_figure(plot_lambda_max(frame, fits), "lambda_max", tmp_path),
        save_figure(plot_envelope(points, 0.1, 1.0), "envelope", tmp_path),
    ]
    for path in paths:
        assert_png_drawn(path)


def test_shown_figure_is_the_written_png_and_is_closed(tmp_path, monkeypatch):
    """``show=True`` displays the PNG just written (no second drawing) and closes the figure."""
    import IPython.display
    import matplotlib.pyplot as plt

    from talr_theory.plotting import save_figure

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, "shown", tmp_path, show=True)
    assert_png_drawn(path)
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Image)
    assert shown[0].data == path.read_bytes()
    assert not plt.fignum_exists(fig.number)
