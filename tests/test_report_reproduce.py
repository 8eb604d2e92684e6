"""`mtl-bench reproduce` of the Sener & Koltun MultiMNIST table, end to end on the tiny MNIST."""
from __future__ import annotations

import pandas as pd
from report_runs import ONE_THREAD

from conftest import cli
from mtl_bench.report.papers import available_presets, grid_commands, load_preset, protocol_departures


def test_reproduce_without_the_data_stops_at_the_first_grid_with_one_error(tmp_path):
    """A grid refused before any run (here MNIST missing, as for every grid) stops the
    reproduction: one error, no second grid, no table, no output folder."""
    sweep = tmp_path / "sweep"
    out = cli("reproduce", "sener_koltun_multimnist", f"dataset.root={tmp_path / 'nowhere'}",
              f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 2  # as the refused sweep itself
    assert out.stderr.count("MNIST not found") == 1 and "grid mtl was refused before any run started" in out.stdout
    assert "grid stl" not in out.stdout and "## Regenerated" not in out.stdout and not sweep.exists()


def test_reproduce_sener_koltun_multimnist_prints_both_tables(mnist_root, tmp_path):
    sweep = tmp_path / "sweep"
    out = cli("reproduce", "sener_koltun_multimnist", f"dataset.root={mnist_root}", "dataset.val_size=50",
              "trainer.batch_size=64", "trainer.epochs=1", "seed=0", "trainer.lr=0.01,0.05",
              f"hydra.sweep.dir={sweep}",
              cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    regenerated = text.index("## Regenerated: Sener & Koltun 2018, Table 3")
    published = text.index("## Published: Sener & Koltun 2018, Table 3")
    assert regenerated < published
    ours = text[regenerated:published]
    # both tables list the published rows in the published order, under the same names
    order = lambda part: [line.split(" | ")[0:2] for line in part.splitlines()
                          if line.startswith("| ") and not line.startswith("| method")]
    assert order(ours) == order(text[published:]) == [
        ["| stl", "Single task"], ["| uniform", "Uniform scaling"], ["| uw", "Kendall et al. 2018"],
        ["| gradnorm", "GradNorm"], ["| mgda", "MGDA-UB"]]
    assert "left accuracy % ↑" in ours and "Δm% ↓" in ours
    assert "| mgda | MGDA-UB | **97.26** | **95.90** |" in text[published:]
    # a banner names every override that departs from the paper's protocol, and only those
    (banner,) = {line for line in text.splitlines() if line.startswith("!! NOT the paper's protocol")}
    for departure in ("dataset.val_size=50", "trainer.batch_size=64", "trainer.epochs=1", "seed=0",
                      "trainer.lr=0.01,0.05"):
        assert departure in banner
    assert "dataset.root" not in banner and "hydra.sweep.dir" not in banner
    assert text.index(banner) < text.index("== sener_koltun_multimnist") and banner in ours
    # the runs behind it: 4 strategies + 2 single-task baselines, x 2 lrs, tiny protocol applied
    table = pd.read_csv(sweep / "table.csv").set_index("method")
    assert set(table.index) == {"stl", "uniform", "uw", "gradnorm", "mgda"}
    assert (table["n"] == 1).all()
    assert table.loc["stl", "delta_m"] == 0 and table[["delta_m"]].notna().all().all()
    assert (sweep / "published.md").exists() and (sweep / "table.md").exists()
    commands = (sweep / "commands.txt").read_text().splitlines()
    assert len(commands) == 2 and all("+experiment=sener_koltun_multimnist" in c for c in commands)
    # the command-line lr pair replaces the preset's 6 values; the table keeps one lr per method (table.tune)
    assert len(list((sweep / "mtl").glob("*/summary.json"))) == 8
    assert len(list((sweep / "stl").glob("*/summary.json"))) == 4
    assert set(table.drop(index="stl")["trainer.lr"].astype(str)) <= {"0.01", "0.05"}
    assert "| method | paper | trainer.lr |" in ours and "trainer.lr chosen per method" in ours
    assert "trainer.epochs=1" in commands[0] and "strategy=ew" in commands[1]


def test_every_preset_names_its_grids_and_published_table(tmp_path):
    assert set(available_presets()) >= {"sener_koltun_multimnist", "sener_koltun_celeba", "nash_mtl_nyuv2",
                                        "gong_multimnist_label_fraction", "gradnorm_toy"}
    for name in available_presets():
        meta = load_preset(name)
        assert meta["main_grid"].get("seed"), name
        assert meta["grids"], name
        commands = grid_commands(name, tmp_path, ["trainer.epochs=1"])
        assert all(argv[-1] == "trainer.epochs=1" for _, argv in commands)   # user overrides win
        if meta.get("published"):
            from mtl_bench.report.papers import load_published
            assert (load_published(meta["published"])["method"] == "stl").any()


def test_presets_compose_with_hydra(compose):
    cfg = compose(["+experiment=gong_multimnist_label_fraction"], return_hydra_config=True)
    assert cfg.dataset.name == "multimnist"
    assert "ew,dwa,uw" == cfg.hydra.sweeper.params.strategy
    cfg = compose(["+experiment=gradnorm_toy", "strategy=gradnorm_toy"])
    assert cfg.strategy.name == "gradnorm" and cfg.strategy.alpha == 0.12 and cfg.dataset.preset == "paper"
    cfg = compose(["+experiment=sener_koltun_multimnist"])
    assert cfg.trainer.optimizer == "sgd" and cfg.protocol.selection.split == "val"


def test_protocol_departures_leave_out_where_and_how_fast_runs_go():
    overrides = ["trainer.epochs=1", "hydra/launcher=local", "dataset.root=/data", "+seed=0", "trainer.device=cuda",
                 "dataset.label_fraction=0.1", "grad.method=loop"]
    assert protocol_departures(overrides) == ["trainer.epochs=1", "+seed=0", "dataset.label_fraction=0.1"]
