"""Paper-style tables from run records: pure functions from records to Markdown / LaTeX / CSV.

Kinds (``bench table --kind``):

- ``main``: TIGER Table 1. Methods x datasets x R@5 N@5 R@10 N@10, best per column bold, second
  underlined, and an "Improvement over best baseline" row (best generative vs best non-generative,
  both chosen on validation).
- ``tokenizers``: TIGER Table 2. One row per item tokenizer of the generative model.
- ``ablation``: one row per value of a config key (e.g. ``model.encoder_layers``, TIGER Table 5).
- ``simple``: one table per dataset, one row per method (``render_table``).

What a table compares, and how it says so:

- One compute profile per dataset (``profile=``, else the most common one of the dataset's runs),
  named in the title; runs of other profiles are left out and counted in a note.
- Seeds are averaged only within one configuration *and* one code identity (component versions +
  git commit + dirty flag, ``bench.identity.code_identity``); where one configuration was run by
  different code, the newest code's runs are shown and the others named in a note.
- Every row carries its budget (optimizer steps, epochs, train time, device x threads, stop reason)
  in a Budget column.
- Every selection uses validation NDCG@10 only: the configuration shown for a row, the reference
  baseline of the significance test and the two rows of the "Improvement over best baseline" row.

Every cell is the mean over seeds (± the sample std where there are several). A marker (†) says that
a row is better than the reference baseline (the baseline row with the best validation NDCG@10 on
that dataset) and that a two-sided paired test on per-user values (Wilcoxon signed-rank by default;
recall@K: per-user hit, NDCG@K: per-user gain, from ``per_user_test_rank``, averaged over seeds)
gives p < 0.05; only records with the same dataset fingerprint are paired.

Modules, one job each: ``names`` (headers, display names and order from the registries), ``frame``
(records -> frame, filters and run selection), ``budget``, ``significance``, ``model`` (the table
model and the builders), ``render`` (Markdown, LaTeX, CSV).
"""
from bench.tables.budget import budget_text
from bench.tables.frame import (
    choose_profiles, config_identity, filter_records, latest_code, param_applies, records_frame,
    select_best_configs, selection_notes,
)
from bench.tables.model import (
    Cell, Row, Table, build_ablation_table, build_main_table, build_table, build_tokenizer_table, rank_marks,
)
from bench.tables.names import (
    DEFAULT_METRICS, IMPROVEMENT_ROW, MAIN_METRICS, SELECT_METRIC, SIGNIFICANCE_MARK, dataset_name, format_value,
    is_generative, metric_header, tokenizer_name,
)
from bench.tables.render import (
    latex_booktabs, latex_escape, render, render_table, summarize, table_to_csv, table_to_latex, table_to_markdown,
)
from bench.tables.significance import best_on_validation, paired_pvalue, per_user_values

__all__ = [
    "Cell", "DEFAULT_METRICS", "IMPROVEMENT_ROW", "MAIN_METRICS", "Row", "SELECT_METRIC", "SIGNIFICANCE_MARK",
    "Table", "best_on_validation", "budget_text", "build_ablation_table", "build_main_table", "build_table",
    "build_tokenizer_table", "choose_profiles", "config_identity", "dataset_name", "filter_records",
    "format_value", "is_generative", "latest_code", "latex_booktabs", "latex_escape", "metric_header",
    "paired_pvalue", "param_applies", "per_user_values", "rank_marks", "records_frame", "render", "render_table",
    "select_best_configs", "selection_notes", "summarize", "table_to_csv", "table_to_latex", "table_to_markdown",
    "tokenizer_name",
]
