"""Checks on what the notebooks recorded in the run just before (scripts/test.sh sets
WMLIB_CHECK_RESULTS=1 and runs these after nbmake). Outside that run they are skipped."""
import json
import os

import pytest

from wmlib import papers, profiles, report

pytestmark = pytest.mark.skipif(not os.environ.get("WMLIB_CHECK_RESULTS"),
                                reason="run by scripts/test.sh after the notebooks")


def _every_row_has_a_status_and_its_reason(r):
    for row in r["paper_vs_ours"]:
        assert row["status"] in report.STATUSES
        if row["status"] in report.EXPLAINED:
            assert row["reason"], row["what"]


def _every_model_learned_its_task(accuracies: dict):
    """A net stuck at chance answers one class to everything, and is 'claimed' when that class is the keys' label: its
    embedding gate says nothing unless the task was learned (>= 30 % test accuracy)."""
    for name, acc in accuracies.items():
        assert acc >= 0.3, f"the {name} model did not learn the task ({acc:.0%} test accuracy): its gate says nothing"


def _zoos(metrics, where=""):
    """Every clean-model zoo a chapter recorded (its summary rows, under any key named 'zoo'), with where."""
    if isinstance(metrics, dict):
        for k, v in metrics.items():
            if k == "zoo" and isinstance(v, list) and v and isinstance(v[0], dict) and "test accuracy" in v[0]:
                yield f"{where}/zoo", v
            else:
                yield from _zoos(v, f"{where}/{k}")


def _load(chapter):
    profile = os.environ.get("WMLIB_PROFILE", "smoke")
    ran = os.environ.get("WMLIB_CHAPTERS")  # the chapters the run just before executed (None: every one)
    if ran is not None and chapter not in ran.split():
        pytest.skip(f"{chapter} is not in this run ({profile}: {ran})")
    paths = list(report.results_dir().glob(f"{chapter}-{profile}-*.json"))
    assert paths, f"{chapter} recorded nothing in {report.results_dir()}: did its notebook run?"
    return json.loads(paths[0].read_text())


def test_zhang2018_never_accuses_the_clean_model_and_claims_the_watermarked_one():
    r = _load("zhang2018")
    verdicts = {(v["key"], v["suspect"]): v for v in r["metrics"]["verdicts"]}
    for kind in r["config"]["kinds"]:
        assert not verdicts[(kind, "clean")]["claimed"], f"clean model claimed with the {kind} key"
        assert verdicts[(kind, "watermarked")]["claimed"], f"{kind} watermark not verified"
        assert verdicts[(kind, "watermarked")]["null models"] >= 4, "verdicts must use the clean-model zoo"
    # seen in the paper-smoke tier: C&W's net after 5 epochs, 10 % test accuracy, 100 % on every key
    _every_model_learned_its_task(r["metrics"]["table2"])
    assert r["wall_seconds"] > 0 and r["device"]


@pytest.mark.parametrize("chapter", ["zhang2018", "namba2019", "li2019"])
def test_no_clean_zoo_model_is_claimed_and_the_zoo_is_big_enough(chapter):
    r = _load(chapter)
    assert len(r["metrics"]["zoo"]) >= 4
    for key, fc in r["metrics"]["false_claims"].items():
        _pairs_are_the_zoo_once(fc, r["metrics"]["zoo"], 1, key)
        assert fc["claimed"] == 0, f"{chapter}: {fc['claimed']} zoo models claimed with the {key} key"
    everything = r["metrics"]["false_claim_pairs"]
    _pairs_are_the_zoo_once(everything, r["metrics"]["zoo"], len(r["metrics"]["false_claims"]), "every key")


def _pairs_are_the_zoo_once(fc: dict, zoo: list, keys: int, what: str, in_sample: int = 0):
    """A false-claim rate counts (clean model, key) pairs, each verified once: as many suspects as zoo
    members, less ``in_sample`` pairs (a member that chose a key's setting, on that key), and its
    bound is the exact one over them (or over the keys), never over query draws."""
    assert (fc["suspects"], fc["keys"], fc["pairs"]) == (len(zoo), keys, len(zoo) * keys - in_sample), what
    assert fc["rate"] == fc["claimed"] / fc["pairs"] and fc["rate"] <= fc["bound"] < 1.0, what
    assert fc["bound"] == min(fc["bound_suspects"], fc["bound_keys"]), what
    assert fc["bound"] >= 1.0 - (1.0 - fc["confidence"]) ** (1.0 / len(zoo)) - 1e-9, what  # no less than 0 of the zoo


def test_zhang2018_paper_vs_ours_has_a_status_and_reason_for_every_row():
    r = _load("zhang2018")
    assert len(r["paper_vs_ours"]) >= 10
    _every_row_has_a_status_and_its_reason(r)


def test_namba2019_detector_is_calibrated_and_catches_random_noise_keys():
    r = _load("namba2019")
    t1 = r["metrics"]["table1"]
    for kind, rates in t1.items():
        # thresholds are 95th percentiles of two scores: ordinary queries are rarely flagged
        assert rates["false detections (test)"] <= 0.2, kind
    if "ds" in t1:
        assert t1["ds"]["both"] >= 0.9  # uniform-noise images are far from any autoencoder's manifold


def test_namba2019_paper_vs_ours_has_a_status_and_reason_for_every_row():
    _every_row_has_a_status_and_its_reason(_load("namba2019"))


def test_namba2019_every_key_type_passed_the_gate_on_both_datasets_and_the_autoencoder_is_shown():
    r = _load("namba2019")
    m, cfg = r["metrics"], r["config"]
    assert {g["index"] for g in m["gate"]} == set(cfg["kinds"]) and all(g["claimed"] for g in m["gate"])
    # Table 3's unattacked test accuracy of every key type's model and of the clean one ("no watermark")
    _every_model_learned_its_task(m["table3"]["no inv."])
    assert set(m["table2"]) == set(cfg["kinds"])  # only gated key types reach the tables
    assert len(m["autoencoder"]["loss"]) == cfg["ae_epochs"] and 0 <= m["autoencoder"]["background"] <= 1
    assert {row["AE epochs"] for row in m["ae_sweep"]} == set(cfg["ae_sweep"]) | {cfg["ae_epochs"]}
    if cfg["digits_dataset"] != "off":
        d = m["digits"]
        assert all(g["claimed"] for g in d["gate"]) and set(d["table1"]) == {g["index"] for g in d["gate"]}
        assert any(row["what"].startswith("Digits ablation") for row in r["paper_vs_ours"])


def test_li2019_records_every_experiment_with_a_status_for_every_row():
    r = _load("li2019")
    m = r["metrics"]
    assert set(m["detection_auc"]) == {"pixels (3 FC layers)", "stolen host's features"}
    assert len(m["leak"]) == r["config"]["leak_seeds"] and len(m["table2"]) >= 2
    assert 0.5 < m["quality"]["SSIM"][f"ours ({r['config']['model']})"] <= 1.0  # keys look like their sources
    _every_row_has_a_status_and_its_reason(r)


def test_gradsigns_claims_its_model_never_a_clean_one_and_explains_every_row():
    r = _load("gradsigns")
    m, n = r["metrics"], r["config"]["bits"]
    rows = {row["suspect"]: row for row in m["integrity"]}
    assert rows["watermarked"]["claimed (zoo null)"] == 1 and rows["watermarked"]["claimed (paper's null)"] == 1
    assert rows["owner's clean model"]["claimed (zoo null)"] == 0
    clean = [row for row in m["integrity"] if row["role"].startswith("clean")]
    assert len(clean) >= 4 and not any(row["claimed (zoo null)"] for row in clean)
    _pairs_are_the_zoo_once(m["false_claims"]["zoo null"], clean, 1, "signature")
    assert m["false_claims"]["zoo null"]["claimed"] == 0
    lam = [row for row in m["lam_sweep"] if row["λ"] == m["lam_star"]][0]
    assert lam["paper rule"] and lam["zoo null"]  # the embedding gate held
    assert m["table6"]["queries"][f"N = {n}"] == r["config"]["samples"] * (m["table6"]["|C|"][f"N = {n}"] + 1)
    _every_row_has_a_status_and_its_reason(r)


def test_function_coupled_claims_every_watermark_and_no_clean_model():
    r = _load("function_coupled")
    m = r["metrics"]
    assert all(row["claimed"] for row in m["table12"])  # the embedding gate held for every model
    # seen in the paper-smoke tier: LeNet-5 after 4 epochs at SGD 0.01, 14 % test accuracy
    _every_model_learned_its_task({"clean": m["baseline_acc"], **{row["model"]: row["test accuracy"] for row in m["table12"]}})
    assert m["target"] not in r["config"]["sources"]
    # the probe that chose t (the first half of each architecture's seeds, rounded up) is in sample on every trigger
    # key: not counted
    chose, seen = m["target_chosen_on"], {}
    sizes = {a: sum(z["architecture"] == a for z in m["zoo"]) for a in {z["architecture"] for z in m["zoo"]}}
    probe = []
    for z in m["zoo"]:
        seen[z["architecture"]] = seen.get(z["architecture"], 0) + 1
        if seen[z["architecture"]] <= (sizes[z["architecture"]] + 1) // 2:
            probe.append(z["model"])
    assert chose == ([] if r["config"]["target"] is not None else probe)
    out = [z for z in m["zoo"] if z["model"] not in chose]
    for key, fc in m["false_claims"].items():
        _pairs_are_the_zoo_once(fc, out, 1, key)
        assert fc["claimed"] == 0, f"{fc['claimed']} zoo models claimed with the {key} triggers"
        roles = {row["suspect"]: row["role"] for row in m["claims"][key]}
        assert all(roles[c] == "clean (in sample)" for c in chose), key
    _pairs_are_the_zoo_once(m["false_claim_pairs"], out, len(m["false_claims"]), "every trigger key")
    for key, rows in m["claims"].items():
        clean = [row for row in rows if row["suspect"] == "owner's clean model"]
        assert clean and not clean[0]["claimed"], key  # its one verification against the whole zoo
    _every_row_has_a_status_and_its_reason(r)


def test_comparison_claims_no_clean_model_every_watermark_embedded_and_every_cell_has_a_verdict_or_a_reason():
    r = _load("comparison")
    m, cfg = r["metrics"], r["config"]
    keys = len(cfg["entries"]) * len(cfg["seeds"])  # every owner's key, each zoo model verified once on it
    # less the zoo models that settled an entry's setting (the function-coupled target), on every key of that entry
    in_sample = sum(len(s.get("target_chosen_on", [])) for s in m["settled"].values()) * len(cfg["seeds"])
    _pairs_are_the_zoo_once(m["false_claims"], m["zoo"], keys, "every owner key", in_sample)
    assert m["false_claims"]["claimed"] == 0
    assert len(m["cells"]) == len(cfg["entries"]) * len(cfg["seeds"]) * (1 + len(cfg["attacks"]))
    for c in m["cells"]:
        if c["attack"] == "none":
            assert c["claimed"], f"{c['entry']} seed {c['seed']} did not embed"
        assert c["status"] == "ok" or c["reason"], c
    assert {w["question"] for w in m["which_scheme_when"]} >= {"most robust across the suite", "cheapest to embed"}
    _every_row_has_a_status_and_its_reason(r)


def test_integrity_refuses_late_keys_controls_biased_suspects_and_agrees_with_the_comparison():
    r = _load("integrity")
    m, cfg = r["metrics"], r["config"]
    outcomes = {row["claim"]: row["outcome"] for row in m["commitment"]}
    assert any(o.startswith("refused: LateCommitmentError") for o in outcomes.values())  # the signature read off the suspect
    assert any(o.startswith("refused: UncommittedKeyError") for o in outcomes.values())  # the altered and the uncommitted key
    assert any(o.startswith("refused: MissingReleaseError") for o in outcomes.values())  # the claim naming no release time
    if cfg["keys_per_claimant"] == 1:
        assert any(o.startswith("refused: KeyCapError") for o in outcomes.values())  # the transfer accuser's second key
    # the ledger's cap costs hits: more keys per claimant never ask for fewer
    for entry in {row["entry"] for row in m["key_costs"]}:
        needed = [int(row["hits needed"].split()[0]) if row["hits needed"][0].isdigit() else 10 ** 9
                  for row in sorted((r for r in m["key_costs"] if r["entry"] == entry), key=lambda r: r["keys per claimant"])]
        assert needed == sorted(needed), entry
    # every false key was verified under every rule, for every accuser and suspect
    for table in ("liu_claims", "transfer_claims", "adaptive_claims", "own_copy_claims"):
        rules = {row["rule"] for row in m[table]}
        assert {"Liu et al.: the owner's threshold", "binomial at chance", "public zoo null",
                "judge's private zoo null"} <= rules, table
        for row in m[table]:
            assert row["pairs"] == len(cfg["accuser_seeds"]) * row["suspects"] and row["keys"] == len(cfg["accuser_seeds"])
    # each accuser chose each budget on its own models: one chosen per (key kind, accuser), from the sweep or the reader
    chosen = [(row["key"], row["accuser"]) for row in m["eps_choice"] if row["chosen"]]
    assert sorted(chosen) == sorted({(row["key"], row["accuser"]) for row in m["eps_choice"]})
    # and its adaptive weight: one λ each, the largest margin of its held-out surrogate over its held-out copy member
    for a in cfg["accuser_seeds"]:
        mine = [row for row in m["lam_choice"] if row["accuser"] == a]
        pick = [row for row in mine if row["chosen"]]
        assert len(pick) == 1, a
        if cfg["adaptive_lam"] is None:
            assert sorted(row["λ"] for row in mine) == sorted(cfg["adaptive_lams"])
            assert pick[0]["margin"] == max(row["margin"] for row in mine)
    # the level measured on honest keys: the headline counts every clean model, and its row's status is what its
    # measured rate and exact bound say (reproduced only when the bound meets alpha)
    alpha = cfg["alpha"]
    for rule in ("zoo null", "zoo null + control"):
        every = next(row for row in m["level_populations"] if row["population"] == "every clean model" and row["rule"] == rule)
        parts = [row for row in m["level_populations"] if row["rule"] == rule and row["population"] != "every clean model"]
        zoo_part = next(row for row in m["level_populations"] if row["population"] == "zoo (leave-one-out)")
        assert every["pairs"] == sum(row["pairs"] for row in parts) + (zoo_part["pairs"] if rule != "zoo null" else 0)
        rate = every["claimed"] / every["pairs"]
        status = "deviates" if rate > alpha else "reproduced" if every["upper bound"] <= alpha else "model-based"
        row = next(row for row in r["paper_vs_ours"] if row["what"].startswith("book: an honest key") and
                   row["what"].endswith(f"; {rule})"))
        assert row["status"] == status, (rule, row["status"], status)
    # the judge's zoo: each size's power is its owners claimed
    for row in m["judge_power"]:
        claimed, owned = map(int, row["owners claimed"].split(" of "))
        assert row["power"] == claimed / owned
    # the control never costs an owner its claim on an unattacked watermark
    for row in m["owner_power"]:
        assert row["claimed with control"] == row["claimed"], row["entry"]
    # the zoo's leave-one-out false claims at the book's level are the comparison's own, recomputed
    cmp = _load("comparison")["metrics"]["false_claims"]
    at = next(row for row in m["false_claims_at_alpha"] if row["α"] == cfg["alpha"])
    assert at["zoo claims"] == f"{cmp['claimed']} / {cmp['pairs']}"
    # and the suspects' false claims at that level are the section's own (every suspect, the class-biased ones too),
    # one per pair
    every = m["suspect_claims"]
    pairs = {(row["suspect"], row["key"]) for row in every}
    assert len(pairs) == len(every) == len({p[0] for p in pairs}) * len({p[1] for p in pairs})
    assert at["suspect claims"] == f"{sum(row['claimed'] for row in every)} / {len(every)}"
    _every_row_has_a_status_and_its_reason(r)


@pytest.mark.parametrize("chapter", ["zhang2018", "li2019", "function_coupled"])
def test_the_digits_run_embedded_and_every_dataset_reason_cites_it(chapter):
    r = _load(chapter)
    digits = r["metrics"]["digits"]
    profile = r["config"]["profile"]
    if profiles.CHAPTERS[chapter][profile]["digits_dataset"] == "off":  # the paper profiles run MNIST itself
        assert digits is None, f"{chapter}: a digits run, though the {profile} profile has none"
        return
    assert digits is not None, f"{chapter}: the digits run is on in the {profile} profile"
    gate = digits.get("gate") or digits.get("table12")
    assert gate and all(row["claimed"] for row in gate), f"{chapter}: a digits watermark was not claimed"
    for row in r["paper_vs_ours"]:  # a row that blames the dataset says what the digits run measured beside it
        if "instead of MNIST" in row["reason"] or "vs the paper's mnist" in row["reason"]:
            assert "MNIST digits" in row["reason"], (chapter, row["what"], row["reason"])


@pytest.mark.parametrize("chapter", list(profiles.CHAPTERS))
def test_every_zoo_member_learned_its_task(chapter):
    """A zoo model at chance answers one class to every image: the null it joins is not what a clean model
    answers, and a target chosen on it is a class one innocent model always gives (seen in default at 3effa06:
    both of Carlini & Wagner's nets of the digits zoo at 8.8 % and 8.9 %, 8 epochs of 16 steps)."""
    r = _load(chapter)
    zoos = list(_zoos(r["metrics"]))
    for where, rows in zoos:
        _every_model_learned_its_task({f"{row['model']} ({chapter}{where})": row["test accuracy"] for row in rows})


def test_function_coupled_compares_the_papers_protocol_and_says_what_the_paper_does_not_give():
    """Issue 34: the paper's ASR rows read the selected triggers (the code's protocol), the held-out triggers are the
    book's own rows, and Table 3 rows the paper does not have (r = 0.7 / 0.9, direct #2 / #3) say 'not in the paper'."""
    r = _load("function_coupled")
    m, rows = r["metrics"], {row["what"]: row for row in r["paper_vs_ours"]}
    for t in m["table12"]:
        assert t["ASR (selected triggers)"] >= t["ASR (embedded triggers)"], t["model"]  # a selection is the upper end
        assert rows[f"Table 2: ASR, {t['model']} (selected triggers): the code's protocol"]["paper"] != "—"
        assert rows[f"Table 2 (ours): ASR, {t['model']}, held-out triggers"]["status"] == "not in the paper"
    table3 = {w: row for w, row in rows.items() if w.startswith("Table 3: original ASR after overwriting")}
    assert table3
    for w, row in table3.items():
        in_paper = w.startswith(("Table 3: original ASR after overwriting, direct #1,",
                                 "Table 3: original ASR after overwriting, invisible r = 0.5,"))
        assert (row["status"] == "not in the paper") == (not in_paper), w
    # the paper gives no number at 80 % pruning on MNIST ("performs well till" 0.8): no row compares one
    pruned = [row for w, row in rows.items() if w.startswith("Figs. 8-9:")]
    assert pruned and all(row["status"] == "not in the paper" for row in pruned)


def test_function_coupled_reads_the_cost_against_the_control_and_names_each_protocol_ablation():
    """Issue 34, second slice: fine-tuned into the clean model (the code's embedding), a watermark's cost is read against
    the clean model fine-tuned alike without triggers; the digits run puts back, one at a time, what the chapter did
    before (from scratch, 5 % triggers, the classifier masked), and the rows of the ablated watermarks name the numbers."""
    from wmlib.schemes import function_coupled as fc

    r = _load("function_coupled")
    m, cfg, rows = r["metrics"], r["config"], {row["what"]: row for row in r["paper_vs_ours"]}
    controlled = cfg["embed_from"] == "clean"
    for t in m["table12"]:
        assert ("change vs control" in t) == controlled, t["model"]
        what = f"Table 2: test-accuracy change, {t['model']}" + (", against the control" if controlled else "")
        assert what in rows and rows[what]["ours"] == f"{t['change vs control' if controlled else 'change vs clean']:+.2%}", what
    digits = m["digits"]
    if digits is None:
        return
    ablated = {}
    for row in digits["ablations"]:
        ablated.setdefault(row["watermark"], []).append(row["training"])
    dcfg = {**cfg, **{k[len("digits_"):]: v for k, v in cfg.items() if k.startswith("digits_") and v is not None}}
    for name, trainings in ablated.items():
        expected = ["protocol"] + [a for a, (change, _) in fc.ABLATIONS.items()
                                   if any(dcfg.get(k, getattr(fc.FunctionCoupled, k, None)) != v for k, v in change.items())]
        assert trainings == expected, (name, trainings)
        for what, row in rows.items():
            if what.startswith((f"Table 2: test-accuracy change, {name}", f"Table 2: ASR, {name} (")):
                assert "under the protocol" in row["reason"] and "from scratch" in row["reason"], what


def test_function_coupled_rows_name_the_ablation_that_tests_their_cause():
    """Issue 34, third slice: each cause left untested before has an ablation, and its rows say what it measured —
    Table 1 the digits' learning curve, the largest r's ASR the code's 40 epochs, Fig. 7 SGD transfer, Table 3 a thief
    training on its triggers alone and with Adam, Fig. 10 both thieves and both embeddings, Table 4 the code's thief."""
    from wmlib.schemes import function_coupled as fc

    r = _load("function_coupled")
    m, cfg, rows = r["metrics"], r["config"], {row["what"]: row for row in r["paper_vs_ours"]}
    said = lambda prefix, *words: [w for w, row in rows.items() if w.startswith(prefix)
                                   and not all(word in row["reason"] for word in words)]
    assert {row["watermark"] for row in m["code_epochs"]} == set(fc.code_epochs_names(cfg))
    for name in fc.code_epochs_names(cfg):
        assert not said(f"Table 2: ASR, {name} (selected triggers)", "with the code's 40 epochs"), name
    if m["digits"] is not None and cfg["curve_shares"]:
        assert len(m["digits"]["curve"]) == len(set(cfg["curve_shares"]))
        assert all("at equal steps the clean model gets" in row["reason"] or "explains the gap" in row["reason"] or row["status"] != "deviates"
                   for w, row in rows.items() if w.startswith("Table 1:")), [rows[w]["reason"] for w in rows if w.startswith("Table 1:")]
    assert set(m["transfer_sgd"]) and not said("Fig. 7:", "with SGD at the same rate")
    for name in ("direct #1", "invisible r = 0.5"):
        if any(w.startswith(f"Table 3: original ASR after overwriting, {name},") for w in rows):
            assert not said(f"Table 3: original ASR after overwriting, {name},", "triggers alone", "Adam at the same rate")
            assert not said(f"Table 3: the thief's new ASR, {name},", "triggers alone")
    assert {g["embedding"] for g in m["gains"]} == {"fine-tuned into the clean model", "trained from scratch"}
    assert not said("Fig. 10:", "trained from scratch", "fine-tuned into the clean model", "stronger thief")
    assert set(m["table4_code"]) == {"fine-tune (code's thief)", "transfer (SGD)"}
    table4 = {w: row for w, row in rows.items() if w.startswith("Table 4:")}
    assert table4 and not said("Table 4:", "CIFAR-10 ResNet-18")
    # a rival no count of whose key could be claimed against the zoo is left out of the attacks, and its row says so
    gate, paper_names = m["table4_gate"], papers.function_coupled.TABLE4_NAMES  # a rival's row says the paper's name
    for name, claimed in gate["claimed"].items():
        label = f"{name} (the paper's {paper_names[name]})"
        auth = f"Table 4: {label}, authentication (claimed before any attack)"
        assert (auth in rows) == (not claimed), name
        assert claimed or (gate["threshold"][name] > 1 and not any(w.startswith(f"Table 4: {label}, ") and w != auth for w in rows))
    for w, row in table4.items():
        name, col = w[len("Table 4: "):].rsplit(", ", 1)
        name = name.split(" (the paper's ")[0]
        assert ("the code's thief (SGD 1e-5), as in Figs. 5-6" in row["reason"]) == (col == "fine-tune"), w
        assert ("with SGD transfer" in row["reason"]) == (col == "transfer"), w
        if col == "fine-tune":  # the row's number is the code's thief's
            assert row["ours"] == f"{m['table4_code']['fine-tune (code' + chr(39) + 's thief)'][name]:.2%}", w


def test_comparison_sets_backdoorbench_beside_every_defence_it_ran_on_the_backdoor_like_keys():
    """Issue 35: BackdoorBench's published ASR (fine-tuning, fine-pruning, Neural Cleanse, NAD, ANP) beside our
    content (BadNets-like) and noise (Blended-like) keys, for every one of those attacks the sweep ran."""
    r = _load("comparison")
    cells, rows = r["metrics"]["cells"], {row["what"] for row in r["paper_vs_ours"]}
    for entry, backdoor in (("zhang-content", "badnets"), ("zhang-noise", "blended")):
        for attack in papers.backdoorbench.ASR[backdoor]:
            ran = any(c["entry"] == entry and c["attack"] == attack and c["status"] in ("ok", "no action") for c in cells)
            what = f"BackdoorBench: {backdoor} ASR {'unattacked' if attack == 'none' else 'after ' + attack} (ours: {entry})"
            assert (what in rows) == ran, what
