"""benchmarks/speed_table.py, issue 17's table from the benchmarks' result files: each target's
status follows the measured figure, and a missing file or a GPU row says so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from speed_table import rows  # noqa: E402


def _row(table, start):
    return next(r for r in table if r[0].startswith(start))


def test_statuses_follow_the_figures(tmp_path):
    machine = {"cpu": "test CPU", "cores": 2}
    (tmp_path / "recurrent_speed.json").write_text(json.dumps({"date": "2026-01-01", "machine": machine, "rows": [
        {"cell": "lstm", "B": 2, "T": 3, "I": 4, "H": 5, "ms_seqlab": 1.2, "ms_torch": 1.0, "ratio": 1.2},
        {"cell": "lstm", "B": 6, "T": 3, "I": 4, "H": 5, "ms_seqlab": 0.9, "ms_torch": 1.0, "ratio": 0.9},
        {"cell": "gru", "B": 2, "T": 3, "I": 4, "H": 5, "ms_seqlab": 1.0, "ms_torch": 1.0, "ratio": 1.0,
         "mib_seqlab": 30.0, "mib_torch": 10.0, "memory_ratio": 3.0, "rss_mib_seqlab": 1.0, "rss_mib_torch": 2.0}]}))
    (tmp_path / "transformer_generation.json").write_text(json.dumps({"date": "d", "machine": machine, "generate": {
        "rows": [{"threads": 1, "tokens_per_s_cache": 100.0, "tokens_per_s_no_cache": 25.0, "speedup": 4.0}]}}))
    table = rows(tmp_path)
    assert _row(table, "LSTM training step vs nn.LSTM, CPU (B2 ")[5] == "NOT met"
    assert _row(table, "LSTM training step vs nn.LSTM, CPU (B6 ")[5] == "met"
    gru = _row(table, "GRU peak memory")
    assert gru[3].startswith("3.00x") and gru[5] == "NOT met" and "resident growth 1 vs 2 MiB" in gru[3]
    assert _row(table, "KV-cache speed-up")[5] == "NOT met"  # 4x < 5x: a speed-up, higher is better
    assert "test CPU" in gru[6] and "2026-01-01" in gru[6]
    assert all(r[5].startswith("not run here (no GPU)") for r in table if "H200" in r[0])
    assert not any(r[0].startswith("GPT training step") for r in table)  # its file is missing: no row


def test_a_missing_recurrent_file_is_said():
    table = rows(Path("/nonexistent"))
    assert _row(table, "recurrent layers")[5] == "not measured"
