"""Paper-style tables from run records: pure functions from records to Markdown / LaTeX / CSV.

Kinds (``bench table --kind``):

- ``main``: TIGER Table 1. Methods x datasets x R@5 N@5 R@10 N@10, best per column bold, second
  underlined, and an "Improvement over best baseline" row (best generative vs best non-generative,
  both chosen on validation).
- ``tokenizers``: TIGER Table 2. One row per item tokenizer of the generative model.
- ``ablation``: one row per value of a config key (e.g. ``model.encoder_layers``, TIGER Table 5).
- ``simple``: one table per dataset, one row per method (``render_table``).

What a table compares, and how it says so:

- Choosing a table's runs (``select_*``: one compute profile per dataset, one code identity per
  configuration, the profile's budget, the configuration best on validation) is separate from
  building the table from those runs (``table_from_selection``): `bench select` writes the choice
  to ``results/selection.json`` with a reason for every run left out, and `bench render` builds
  every table from that file and the records alone (``bench.tables.selection``).
- Seeds are averaged only within one configuration *and* one code identity (component versions +
  git commit + dirty flag, ``bench.identity.code_identity``).
- Every row carries its budget, its number of seeds (n) and how many configurations it was chosen
  among (Configs; 1 = no choice); the CSV lists its run ids.
- Every selection uses validation NDCG@10 only: the configuration shown for a row, the reference row
  of the significance test and the two rows of the "Improvement over best baseline" row.
- The tokenizer table compares each tokenizer at the profile's default configuration; the
  configuration best on validation is a separate 'tuned' row that says how many were tried.
- Sweep and ablation rows share the default row's semantic IDs at each seed where the varied key
  cannot change them.

Every cell is the mean over seeds (± the sample std where there are several). A mark (†/‡) says that a
row is better/worse than the table's reference row by Welch's t-test on per-seed values, Holm-corrected
over every test of the table, with at least 3 seeds in each compared row (``significance``: why).

Modules, one job each: ``names`` (headers, display names and order from the registries), ``frame``
(records -> frame, filters and run-selection steps), ``budget``, ``significance`` (Welch over seeds,
Holm), ``selection`` (the frozen choice of runs, its file), ``model`` (the table model, choosing and
building the main, tokenizer and ablation tables), ``sweep``, ``coldstart``, ``decoding``, ``render``
(Markdown, LaTeX, CSV).
"""
from bench.tables.budget import budget_text
from bench.tables.frame import (
    best_configs, choose_profiles, config_identity, filter_records, latest_code, param_applies, records_frame,
    select_best_configs,
)
from bench.tables.model import (
    Cell, Row, Table, build_ablation_table, build_main_table, build_table, build_tokenizer_table, rank_marks,
    select_ablation, select_main, select_table, select_tokenizers, table_from_selection,
)
from bench.tables.names import (
    DEFAULT_METRICS, IMPROVEMENT_ROW, MAIN_METRICS, SELECT_METRIC, SIGNIFICANCE_MARK, dataset_name, format_value,
    is_generative, metric_header, tokenizer_name,
)
from bench.tables.render import (
    latex_booktabs, latex_escape, render, render_table, summarize, table_to_csv, table_to_latex, table_to_markdown,
)
from bench.tables.selected import build_selected
from bench.tables.selection import Pick, TableSelection, read_selection, selection_json
from bench.tables.significance import MIN_SEEDS, best_on_validation, holm, paired_pvalue, per_user_values, welch_pvalue

__all__ = [
    "Cell", "DEFAULT_METRICS", "IMPROVEMENT_ROW", "MAIN_METRICS", "MIN_SEEDS", "Pick", "Row", "SELECT_METRIC",
    "SIGNIFICANCE_MARK", "Table", "TableSelection", "best_configs", "best_on_validation", "budget_text",
    "build_ablation_table", "build_main_table", "build_selected", "build_table", "build_tokenizer_table",
    "choose_profiles", "config_identity", "dataset_name", "filter_records", "format_value", "holm", "is_generative",
    "latest_code", "latex_booktabs", "latex_escape", "metric_header", "paired_pvalue", "param_applies",
    "per_user_values", "rank_marks", "read_selection", "records_frame", "render", "render_table", "select_ablation",
    "select_best_configs", "select_main", "select_table", "select_tokenizers", "selection_json", "summarize",
    "table_from_selection", "table_to_csv", "table_to_latex", "table_to_markdown", "tokenizer_name", "welch_pvalue",
]
