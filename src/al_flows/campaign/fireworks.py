"""Send a campaign to a FireWorks LaunchPad (clusters: ``qlaunch`` on GPU and CPU queues).

The campaign Flow becomes one Workflow with jobflow's ``flow_to_workflow``, the JobStore
passed explicitly (workers otherwise use their own, by default in-memory, store). Every
job carries ``spec._category`` from the campaign's ``queues`` section, including the
jobs that rounds create while running; a worker pulls only its category.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import jobflow.managers.fireworks as jobflow_fireworks
from fireworks import LaunchPad, Workflow
from jobflow.managers.fireworks import JobFiretask

from al_flows.campaign.config import AnyConfig
from al_flows.campaign.run import CampaignError, check_workdir_campaign, plan_flow, prepare_store, workdir_lock

UNFINISHED = ("READY", "RUNNING", "RESERVED", "WAITING", "PAUSED", "FIZZLED", "DEFUSED")
_flow_to_workflow = jobflow_fireworks.flow_to_workflow


class CampaignFiretask(JobFiretask):
    """jobflow's JobFiretask, except that the flows a job creates at run time (a round
    replacing itself with the next) may reference outputs of jobs outside those flows.

    jobflow 0.4.0 converts such flows with ``allow_external_references=False`` and the
    Firework fizzles, although ``run_locally`` accepts them; every round of a campaign
    refers to the dataset and test set made before it.
    """

    _fw_name = "{{al_flows.campaign.fireworks.CampaignFiretask}}"

    def run_task(self, fw_spec):
        """Run the job as JobFiretask does; the flows it creates become Workflows through :func:`workflow_from_flow`."""
        with _dynamic_flows_as_campaign_workflows():
            return super().run_task(fw_spec)


def workflow_from_flow(flow, store, **kwargs) -> Workflow:
    """``flow_to_workflow`` with external references allowed and CampaignFiretasks."""
    wf = _flow_to_workflow(flow, store, allow_external_references=True, **kwargs)
    for fw in wf.fws:
        fw.tasks = [
            CampaignFiretask(job=t["job"], store=t["store"]) if isinstance(t, JobFiretask) else t for t in fw.tasks
        ]
    return wf


@contextmanager
def _dynamic_flows_as_campaign_workflows():
    original = jobflow_fireworks.flow_to_workflow
    jobflow_fireworks.flow_to_workflow = lambda flow, store=None, **kw: workflow_from_flow(flow, store, **kw)
    try:
        yield
    finally:
        jobflow_fireworks.flow_to_workflow = original


def campaign_workflow(config: AnyConfig, base_dir: str | Path, workdir: str | Path) -> tuple[Workflow | None, str]:
    """The FireWorks Workflow that runs (or continues) the campaign now, and why."""
    secret = getattr(config.store, "inline_secret", lambda: None)()
    if secret is not None:
        var = "password_env: AL_FLOWS_DB_PASSWORD" if secret == "password" else "uri_env: AL_FLOWS_DB_URI"
        raise CampaignError(
            f"store.{secret}: a secret written in the campaign file would be copied into every job on the LaunchPad; "
            f"export it in an environment variable and give its name instead (e.g. {var})"
        )
    check_workdir_campaign(config, workdir)  # before the lock file is written
    workdir = Path(workdir).resolve()
    with workdir_lock(workdir):
        store = prepare_store(config, workdir)
        try:
            flow, why = plan_flow(config, Path(base_dir), store)
        finally:
            store.close()
    if flow is None:
        return None, why
    wf = workflow_from_flow(flow, store, name=f"al_flows {config.name}")
    wf.metadata.update({"al_flows_campaign": config.name, "fingerprint": config.fingerprint(), "workdir": str(workdir)})
    return wf, why


def submitted_workflows(launchpad: LaunchPad, config: AnyConfig) -> list[dict]:
    """Workflows of this campaign already on the LaunchPad (id and state)."""
    ids = launchpad.get_wf_ids({"metadata.al_flows_campaign": config.name})
    return [{"fw_id": i, "state": launchpad.get_wf_summary_dict(i)["state"]} for i in ids]


def submit_campaign(config: AnyConfig, base_dir, workdir, launchpad: LaunchPad) -> tuple[dict | None, str]:
    """Add the campaign's workflow to ``launchpad``; refuses while an earlier one is unfinished."""
    running = [w for w in submitted_workflows(launchpad, config) if w["state"] in UNFINISHED]
    if running:
        w = running[0]
        raise CampaignError(
            f"campaign '{config.name}' is already on the LaunchPad "
            f"(workflow of fw_id {w['fw_id']}, state {w['state']}); "
            f"watch it with 'lpad get_wflows -i {w['fw_id']}', rerun fizzled jobs with 'lpad rerun_fws -s FIZZLED', "
            f"or remove it with 'lpad delete_wflows -i {w['fw_id']}' before submitting again"
        )
    wf, why = campaign_workflow(config, base_dir, workdir)
    if wf is None:
        return None, why
    mapping = launchpad.add_wf(wf)
    return mapping, f"{why}: added {len(wf.fws)} Firework(s) to the LaunchPad"
