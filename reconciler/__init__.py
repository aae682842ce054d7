"""jsops: declarative GitOps for NATS JetStream.

The library behind the ``jsops`` command. The CLI (``reconciler.cli``) is a thin layer
over ``reconciler.api``, which tests and other programs call directly::

    from reconciler.api import resolve_target, plan, apply, export
    target = resolve_target("jsops.yaml", "dev")
    the_plan = plan(target)                        # reads only
    the_plan, result = apply(target, confirm=lambda p: True)
    export(target, "adopted/")                     # live state -> manifests

Other entry points: ``reconciler.validate.validate_project`` (offline),
``reconciler.promote.promote``,
``reconciler.accounts`` (operator mode). Pipeline, one module per stage: load ->
validate (models, policy) -> live -> normalize -> diff -> plan -> render / apply.

(The package itself imports nothing, so ``jsops --help`` starts fast; its function
names would collide with the stage modules ``plan`` and ``apply``.)
"""
