"""The privacy portal: the data subject's own pages (jinja2, no JavaScript)."""
