"""The reporting wing: result tables -> figures, the summary and the studies' figures.

It reads results/<entry>.csv (and the BOUNDS registry for names, labels and
statuses), never a model: reports.py (tables), plots.py (the pipeline's figures),
studies.py (the studies' figures), ranking.py (the scores of a measure as a
predictor of the gap) and ranking_study.py (the ranking study's table and figures).
"""
