"""Run records → the Table-5-shaped report: tables, paired effects and their statistics, plots, LaTeX, and the
output folder it publishes into. Knows nothing about training and imports no torch."""
