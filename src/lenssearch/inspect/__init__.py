"""Visual inspection of a search's candidates by several graders (HOLISMOKES XVI, Schuldt et al. 2025, Sect. 4).

``lenssearch inspect`` creates an inspection folder (SQLite database in WAL mode and a cache of rendered stamps)
from the search's ``candidates.ecsv`` and its field, adds graders, calibration systems, rounds and balanced
assignments, serves the grading web app on 127.0.0.1 and exports the grades with their aggregates to ECSV and a
summary to MLflow.

- :mod:`~lenssearch.inspect.grading`: grade scales, mean grade G, forwarding rule, A/B classes, Fleiss' kappa;
- :mod:`~lenssearch.inspect.store`: the database and the organiser's and graders' actions;
- :mod:`~lenssearch.inspect.stamps`: stamps in three scalings, single bands, environment histogram, cached;
- :mod:`~lenssearch.inspect.aggregate`: the per-candidate catalogue, agreement, export, MLflow summary;
- :mod:`~lenssearch.inspect.app`: the Flask app and its server;
- :mod:`~lenssearch.inspect.synthetic`: a small synthetic field and candidates (tests, demo).
"""
