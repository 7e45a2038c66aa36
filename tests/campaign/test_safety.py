"""Safety: nothing but tensors and plain data is ever unpickled from a model blob, and a
second al-flows process cannot write a work directory's embedded store while one runs."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import pytest
import torch

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.run import CampaignError, run_campaign
from al_flows.potential.model import ModelSettings, build_member
from al_flows.potential.weights import member_from_bytes, member_to_bytes


class _Payload:
    """Unpickling this runs ``open(path, 'w')``: a stand-in for arbitrary code in a pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_model_blob_with_python_objects_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    good = member_to_bytes(
        build_member(ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=6), [29], seed=0),
        ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=6),
        {},
    )
    payload = torch.load(io.BytesIO(good), weights_only=True)
    payload["extra"] = {"evil": _Payload(str(marker))}
    buf = io.BytesIO()
    torch.save(payload, buf)
    with pytest.raises(ValueError, match=r"model blob refused: .* never unpickled \(torch.load weights_only=True\)"):
        member_from_bytes(buf.getvalue())
    assert not marker.exists()
    # the same bytes through plain pickle would have run the payload: the test is not vacuous
    evil = pickle.dumps(_Payload(str(marker)))
    with pytest.raises(ValueError, match="model blob refused"):
        member_from_bytes(evil)
    assert not marker.exists()
    pickle.loads(evil)
    assert marker.exists()
    # a genuine blob still loads
    module, settings, _ = member_from_bytes(good)
    assert settings.n_atom_basis == 8


def test_second_writer_of_a_workdir_is_refused_with_a_clear_message(tmp_path, tiny_dict):
    workdir = tmp_path / "w"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from al_flows.campaign.run import workdir_lock\n"
            f"with workdir_lock(Path({str(workdir)!r})):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        config = validate_campaign(tiny_dict)
        with pytest.raises(
            CampaignError,
            match=rf"another al-flows process is using {workdir} .*wait for it to finish or use another --workdir",
        ):
            run_campaign(config, ".", workdir, echo=lambda *_: None)
        assert not (workdir / "store").exists()  # refused before opening the store
        from al_flows.campaign.fireworks import campaign_workflow

        with pytest.raises(CampaignError, match="another al-flows process is using"):
            campaign_workflow(config, ".", workdir)
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process (even on SIGKILL): the next run takes it at once (the lock
    # never waits: it would raise CampaignError if it were still held)
    from al_flows.campaign.run import workdir_lock

    with workdir_lock(workdir):
        assert (workdir / ".al_flows.lock").read_text().strip() == str(os.getpid())
