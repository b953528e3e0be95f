"""Reports: one self-contained HTML file (inline CSS and SVG, no script, nothing fetched at view
time) or markdown for pull requests."""
