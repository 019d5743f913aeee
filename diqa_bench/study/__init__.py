"""``diqa-bench study``: collect human quality ratings of the user's photos in a browser.

- :mod:`.plan`: ``study create``: stimuli (the project's distortion generator), content groups,
  the protocol (``study.json``) and each rater's randomised presentation plan;
- :mod:`.store`: the study's SQLite file: raters, plans, sessions, every rating as it is given;
- :mod:`.server`: ``study serve``: the rating page (Flask), one personal link per rater;
- :mod:`.export`: ``study status`` and ``study export`` (derm-ratings CSV, pairs CSV, scale);
- :mod:`.scaling`: Bradley-Terry scaling of paired comparisons and the adaptive choice of pairs.

Only :mod:`.cli` is imported for ``--help``; it imports nothing heavy.
"""
