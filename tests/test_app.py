"""The app as a user drives it, through Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_app_shows_model_summary_and_switches_model() -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.subheader[0].value == "vt_resnet20"
    params = next(m for m in at.metric if m.label == "Parameters")
    assert params.value.endswith(" M")
    at.selectbox(key="model").select("vit_resnet_seed").run()
    assert not at.exception
    assert at.subheader[0].value == "vit_resnet_seed"
