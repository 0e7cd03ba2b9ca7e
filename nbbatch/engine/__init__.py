"""The engine: a run, a plan and a status, with no terminal.

    run_batch(settings, env=os.environ, cwd=Path.cwd(), on_event=...) -> RunSummary

lives in engine/run.py; `plan_batch` in plan.py; the status document in status.py. This
package's own import stays light, so `nbbatch status` does not load what only a run needs.
"""
