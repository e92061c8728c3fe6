"""The reporting wing: result tables -> figures, the summary and the studies' figures.

It reads results/<entry>.csv (and the BOUNDS registry for names, labels and
statuses), never a model: reports.py (tables), plots.py (the pipeline's figures),
studies.py (the studies' figures).
"""
