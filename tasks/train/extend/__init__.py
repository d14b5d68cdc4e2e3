"""Staged length extension (report section 5): RL continued through longer output windows.

``params.py`` the ``extend`` section; ``schedule.py`` the windows, the promotion rule and each
window's RL settings (the mitigations); ``data.py`` the extension's prompts and the refilter before
the last window; ``figure.py`` Figure 4; ``train.py`` the stage (``python -m tasks.train.extend.train``).
"""
