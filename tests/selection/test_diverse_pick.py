"""selection.pick: diverse -- farthest-point sampling (FPS) over the candidates in a feature space
(al_flows.selection.diversity), through select(), the select job and the flow."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from pydantic import ValidationError

from al_flows.active_learning.stop_policy import StopPolicy
from al_flows.selection.diversity import diverse_pick, farthest_point_sampling, feature_scale, hausdorff
from al_flows.selection.strategies import select
from al_flows.selection.trust_levels import SelectionSettings
from helpers import frames_with_deviations


def _features_of(table):
    """A FeatureSource returning hand-made per-atom features table[i] for frame i."""
    calls = []

    def features(indices):
        calls.append(list(indices))
        return [np.asarray(table[i], dtype=float) for i in indices]

    features.calls = calls  # type: ignore[attr-defined]
    return features


def test_fps_on_a_line_starts_at_the_highest_deviation_and_breaks_ties_by_index():
    # 11 one-atom frames on a line, x = 0..10; frame 5 deviates most
    x = np.arange(11.0)
    devs = [0.1] * 11
    devs[5] = 0.2
    settings = SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=4, pick="diverse")
    features = _features_of([[[v]] for v in x])
    res = select(frames_with_deviations(devs), settings, features=features)
    # by hand: start 5; then 0 and 10 are both 5 away (tie: 0 first), then 10 (5 away); then every
    # point is at most 2 from a pick: 2, 3, 7, 8 tie at 2 (2 first)
    assert res.selected == [0, 2, 5, 10]
    # distances in units of the candidates' spread: RMS of x - 5 over 0..10 = sqrt(110 / 11) = sqrt(10)
    scale = np.sqrt(10.0)
    assert feature_scale(x[:, None]) == pytest.approx(scale, rel=1e-12)
    ranks = {i: (res.picks[i]["pick_rank"], res.picks[i]["pick_distance"]) for i in res.selected}
    assert ranks[5] == (0, None)
    assert ranks[0][0] == 1 and ranks[10][0] == 2 and ranks[2][0] == 3
    # exact arithmetic on small integers divided by one float: 1e-12 relative is round-off only
    for i, d in ((0, 5.0), (10, 5.0), (2, 2.0)):
        assert ranks[i][1] == pytest.approx(d / scale, rel=1e-12)
    assert all(res.picks[i]["pick"] == "diverse" for i in res.selected)
    assert features.calls == [list(range(11))]  # called once, with the candidates only


def test_fps_picks_one_of_each_cluster_of_near_duplicates():
    # three clusters of three near-duplicates (1e-3 apart); the highest deviation is in cluster B
    centres = {"A": (0.0, 0.0), "B": (10.0, 0.0), "C": (0.0, 10.0)}
    points, groups = [], []
    for name, (cx, cy) in centres.items():
        for k, dx in enumerate((0.0, 1e-3, -1e-3)):
            points.append([cx + dx, cy + (0.5e-3 if k == 2 else 0.0)])
            groups.append(name)
    devs = [0.10, 0.11, 0.12, 0.15, 0.29, 0.14, 0.13, 0.10, 0.12]
    order, dist = diverse_pick([np.array([p]) for p in points], devs, 3)
    assert order[0] == 4  # highest deviation (B, x = 10.001)
    # farthest from (10.001, 0): C's points at distance sqrt(10.001^2 + 10^2); the one at x = -0.001,
    # y = 10.0005 (index 8) is farthest
    assert order[1] == 8
    # then A, the point farthest from its nearest pick: (0, 0) is 10.001 from B's and sqrt(0.001^2 + 10.0005^2)
    # from C's pick (min 10.0005); (0.001, 0) is 10.000 from B's; (-0.001, 0.0005) is 10.0000 from C's
    assert order == [4, 8, 0] and sorted(groups[i] for i in order) == ["A", "B", "C"]
    d = np.array(points)
    scale = feature_scale(d)
    assert dist[0] is None
    assert dist[1] == pytest.approx(np.hypot(10.002, 10.0005) / scale, rel=1e-12)
    assert dist[2] == pytest.approx(np.hypot(0.001, 10.0005) / scale, rel=1e-12)
    # with a cap of 6, two of each cluster: the near-duplicates (within 2.1e-3 of each other) only after
    # every cluster has one pick
    order6, dist6 = diverse_pick([np.array([p]) for p in points], devs, 6)
    assert order6[:3] == [4, 8, 0]
    assert max(dist6[3:]) < 2.1e-3 / scale < 10 / scale < min(dist6[1:3])


def test_farthest_point_sampling_with_exact_repeats_and_bad_start():
    pts = np.array([[0.0], [0.0], [1.0]])
    order, dist = farthest_point_sampling(3, 5, 0, lambda i: np.abs(pts[:, 0] - pts[i, 0]))
    assert order == [0, 2, 1] and dist == [None, 1.0, 0.0]  # the exact repeat last, at distance 0
    with pytest.raises(ValueError, match="start 3 is not a point index"):
        farthest_point_sampling(3, 1, 3, lambda i: pts[:, 0])


def test_first_pick_ties_by_index():
    order, _ = diverse_pick([np.array([[float(i)]]) for i in range(4)], [0.2, 0.1, 0.2, 0.2], 1)
    assert order == [0]


def test_atoms_features_use_the_symmetric_hausdorff_distance():
    """Large cells: 99 bulk-like atoms (feature 0) and one atom that differs. Frame 1 and 2 are
    near-duplicates (their odd atoms 0.01 apart); frame 3's odd atom points elsewhere."""
    bulk_atoms = np.zeros((99, 2))
    odd = {0: [0.0, 0.0], 1: [1.0, 0.0], 2: [1.01, 0.0], 3: [0.0, 1.0]}
    sets = [np.vstack([bulk_atoms, [odd[i]]]) for i in range(4)]
    # by hand: an odd atom's nearest atom in another frame is that frame's odd atom or a bulk atom (at 0), so
    # d(i, j) = max over the two odd atoms of min(|odd|, |odd_i - odd_j|): d(0,1) = 1, d(0,2) = 1.01,
    # d(0,3) = 1, d(1,2) = 0.01, d(2,3) = max(min(1.01, 1.42), min(1, 1.42)) = 1.01
    assert hausdorff(sets[0], sets[2]) == pytest.approx(1.01, rel=1e-12)
    assert hausdorff(sets[1], sets[2]) == pytest.approx(0.01, rel=1e-9)
    assert hausdorff(sets[2], sets[3]) == pytest.approx(1.01, rel=1e-12)
    order, dist = diverse_pick(sets, [0.2, 0.1, 0.1, 0.1], 3, features="atoms")
    # start 0 (highest deviation); 2 is farthest (1.01); then 3 (min(1, 1.01) = 1) beats 1 (min(1, 0.01))
    assert order == [0, 2, 3]
    allx = np.concatenate(sets)
    scale = np.sqrt(np.mean(np.sum((allx - allx.mean(axis=0)) ** 2, axis=1)))
    assert dist[1] == pytest.approx(1.01 / scale, rel=1e-12) and dist[2] == pytest.approx(1.0 / scale, rel=1e-12)
    # the structure means hardly differ: (1/100, 0), (1.01/100, 0), (0, 1/100); same order here, but
    # the distances are in units of the means' spread
    order_s, _ = diverse_pick(sets, [0.2, 0.1, 0.1, 0.1], 3, features="structure")
    assert order_s == [0, 2, 3]


def test_hausdorff_matches_its_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    assert hausdorff(a, b) == pytest.approx(max(d.min(axis=1).max(), d.min(axis=0).max()), rel=1e-12)


def test_below_the_cap_every_candidate_is_labelled_without_features():
    settings = SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=5, pick="diverse")
    features = _features_of([[[0.0]]] * 4)
    res = select(frames_with_deviations([0.1, 0.01, 0.2, 0.15]), settings, features=features)
    assert res.selected == [0, 2, 3] and features.calls == []
    assert res.picks == {0: {"pick": "below cap"}, 2: {"pick": "below cap"}, 3: {"pick": "below cap"}}


def test_diverse_needs_features_and_other_strategies_ignore_pick():
    settings = SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=1, pick="diverse")
    frames = frames_with_deviations([0.1, 0.2])
    with pytest.raises(ValueError, match=r"^selection\.pick: diverse needs the ensemble's atom features") as exc:
        select(frames, settings)
    assert len(str(exc.value).splitlines()) == 1
    assert settings.needs_features
    # strategies random and all never read features (their spread and draw are unchanged)
    for strategy, want in (("all", [0]), ("random", None)):
        s = settings.model_copy(update={"strategy": strategy})
        assert not s.needs_features
        res = select(frames, s, seed=3)
        plain = SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=1, strategy=strategy)
        base = select(frames, plain, seed=3)
        assert res.selected == base.selected and res.picks == {}
        if want is not None:
            assert res.selected == want


def test_bad_values_give_one_line_errors():
    from al_flows.campaign.config import ConfigError, validate_campaign
    from helpers import TINY

    for selection, words in (
        ({"pick": "diverse2"}, "selection.pick"),
        ({"pick": "diverse", "diverse_features": "molecule"}, "selection.diverse_features"),
        ({"diverse_features": "atoms"}, "diverse_features='atoms' applies to pick: diverse only"),
    ):
        with pytest.raises(ConfigError) as exc:
            validate_campaign({**TINY, "selection": {**TINY["selection"], **selection}})
        msg = str(exc.value)
        assert len(msg.splitlines()) == 1 and words in msg, msg
    with pytest.raises(ValidationError, match="set pick: diverse or remove diverse_features"):
        SelectionSettings(diverse_features="atoms")


def test_fingerprint_unchanged_by_the_default_and_changed_by_diverse():
    from al_flows.campaign.config import validate_campaign
    from helpers import TINY

    base = validate_campaign(TINY).fingerprint()
    assert base == "fa122faf91dd4d02"  # the pinned fingerprint of tests/campaign/test_config.py
    same = {**TINY, "selection": {**TINY["selection"], "diverse_features": "structure"}}
    assert validate_campaign(same).fingerprint() == base
    diverse = {**TINY, "selection": {**TINY["selection"], "pick": "diverse"}}
    atoms = {**TINY, "selection": {**TINY["selection"], "pick": "diverse", "diverse_features": "atoms"}}
    fps = {validate_campaign(d).fingerprint() for d in (diverse, atoms)}
    assert len(fps) == 2 and base not in fps


# ---------------------------------------------------------------- the select job, with real SchNet members


def _models(n=2):
    from al_flows.potential.model import ModelSettings, build_member
    from al_flows.potential.weights import member_to_bytes, weights_text

    ms = ModelSettings(n_atom_basis=16, n_interactions=1, n_rbf=10, cutoff=4.0)
    return [
        {"model_id": f"m{s}", "model_blob": weights_text(member_to_bytes(build_member(ms, ["Cu", "Ni"], s), ms, {}))}
        for s in range(n)
    ]


def _groups_of_duplicates() -> tuple[list[Atoms], list[str]]:
    """Three distinct cells (Cu fcc, Ni fcc, Cu3Ni), each as three copies rattled by 2e-3 Angstrom:
    three groups of near-duplicates with different frame ids."""
    cells = {
        "Cu": bulk("Cu", "fcc", a=3.61, cubic=True),
        "Ni": bulk("Ni", "fcc", a=3.52, cubic=True),
        "Cu3Ni": bulk("Cu", "fcc", a=3.58, cubic=True),
    }
    cells["Cu3Ni"].symbols[0] = "Ni"
    frames, groups = [], []
    devs = iter([0.10, 0.12, 0.11, 0.20, 0.13, 0.14, 0.09, 0.08, 0.15])  # highest: Ni copy 0
    for name, cell in cells.items():
        for k in range(3):
            a = cell.copy()
            a.rattle(stdev=2e-3, seed=k + 10 * len(frames))
            a.info.update(deviation=next(devs), explorer="shear")
            frames.append(a)
            groups.append(name)
    return frames, groups


def test_select_job_with_pick_diverse_picks_one_of_each_group_of_duplicates():
    from al_flows.active_learning.jobs.selection import SelectMaker
    from al_flows.frames.extxyz import frames_text
    from al_flows.frames.ids import frame_id

    frames, groups = _groups_of_duplicates()
    for a in frames:
        a.info["frame_id"] = frame_id(a)
    explored = [{"frames_blob": frames_text(frames), "ensemble_id": "e"}]
    settings = SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=3, pick="diverse")
    maker = SelectMaker(settings=settings)
    doc = SelectMaker.make.original(maker, explored, [], "c", 0, seed=0, models=_models())
    chosen = [i for i, r in enumerate(doc.records) if r["selected"]]
    assert sorted(groups[i] for i in chosen) == ["Cu", "Cu3Ni", "Ni"]
    assert 3 in chosen  # the highest deviation starts the sampling
    picked = sorted((doc.records[i]["pick_rank"], i) for i in chosen)
    assert picked[0] == (0, 3) and doc.records[3]["pick_distance"] is None
    assert all(doc.records[i]["pick"] == "diverse" for i in chosen)
    assert all(doc.records[i]["pick_distance"] > 0 for _, i in picked[1:])
    assert not any("pick" in r for i, r in enumerate(doc.records) if i not in chosen)
    assert (doc.pick, doc.diverse_features, doc.device, doc.n_selected) == ("diverse", "structure", "cpu", 3)
    # atoms features: the same groups
    atoms = SelectMaker(settings=settings.model_copy(update={"diverse_features": "atoms"}))
    doc_a = SelectMaker.make.original(atoms, explored, [], "c", 0, seed=0, models=_models())
    assert sorted(groups[i] for i, r in enumerate(doc_a.records) if r["selected"]) == ["Cu", "Cu3Ni", "Ni"]
    # pick random, no models: no device (no model ran), records as before
    plain = SelectMaker(settings=settings.model_copy(update={"pick": "random"}))
    doc_r = SelectMaker.make.original(plain, explored, [], "c", 0, seed=0)
    assert doc_r.device is None and doc_r.pick == "random" and not any("pick" in r for r in doc_r.records)


def test_the_flow_gives_the_select_job_the_models_only_with_pick_diverse(tiny_dict):
    from al_flows.active_learning.flows import ActiveLearningMaker
    from al_flows.active_learning.schemas import RoundState
    from al_flows.campaign.config import validate_campaign

    def select_job(data):
        maker = ActiveLearningMaker.from_config(validate_campaign(data))
        state = RoundState(round=0, dataset_uuid="d", structures_uuid="s", test_uuid="t")
        jobs = maker.round_jobs(state, 10)
        trains = [j.uuid for j in jobs if j.metadata.get("stage") == "train"]
        return next(j for j in jobs if j.metadata.get("stage") == "select"), trains

    job, _ = select_job(tiny_dict)
    assert "models" not in job.function_kwargs and len(job.function_args) == 6
    tiny_dict["selection"]["pick"] = "diverse"
    job, trains = select_job(tiny_dict)
    assert [ref.uuid for ref in job.function_kwargs["models"]] == trains and len(trains) == 2


def test_a_budget_takes_the_diverse_picks_in_the_order_farthest_point_sampling_chose_them():
    from al_flows.active_learning.jobs.selection import budget_cut
    from al_flows.selection.budget import LabelBudget

    # the line of the first test: FPS picks 5, 0, 10, 2 in that order (selected sorted: 0, 2, 5, 10)
    x = np.arange(11.0)
    devs = [0.1] * 11
    devs[5] = 0.2
    settings = SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=4, pick="diverse")
    res = select(frames_with_deviations(devs), settings, features=_features_of([[[v]] for v in x]))
    assert res.priority == [5, 0, 10, 2]  # not highest deviation first: all but frame 5 tie at 0.1
    keep, skipped = budget_cut(res.priority, 2, stop=False)  # a budget of 2 labels this round
    assert (keep, skipped) == ([5, 0], [10, 2])
    assert StopPolicy(budget=LabelBudget(labels_per_round=2)).allowance(None).n == 2
