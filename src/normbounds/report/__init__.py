"""The reporting wing: result tables -> figures, the summary and the studies' figures.

It draws tidy frames of results (`pipeline.results` loads them from results/<entry>.csv)
with the BOUNDS registry's names and statuses, never a model, and imports nothing of the
pipeline: reports.py (tables), plots.py (the pipeline's figures), studies.py (the studies'
figures), ranking.py (the scores of a measure as a predictor of the gap) and
ranking_study.py (the ranking study's table and figures).
"""
