import matplotlib

matplotlib.use("Agg")  # figures are drawn off-screen; shared test helpers live in helpers.py
