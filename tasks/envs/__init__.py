"""Verifiable environments (report section 4.1): task families that generate items and score replies.

Every task implements ``tasks.envs.base.Task``; ``tasks.envs.registry.get_task(name, envs)`` finds one
by name with the run's ``envs`` settings. Families: ``arithmetic``, ``math_tasks``, ``code_tasks``,
``swe/``, ``synlogic/`` (40 logic families); ``mathverify`` checks math answers off the main thread,
``sandbox/`` runs model-written code.
"""
