"""Score an artifact: metrics, calibration, figures and the HTML report."""
