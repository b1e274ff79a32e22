r"""``table.tex``: the report's table as a booktabs ``tabular``, ready to ``\input`` into a paper."""
import re

import pandas as pd

SYMBOLS = str.maketrans({
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "→": r"$\rightarrow$", "±": r"$\pm$",
    "Δ": r"$\Delta$", "—": "---", "−": "$-$", "×": r"$\times$", "*": r"$^{*}$",
})
# A number's minus sign (not a hyphen inside a word such as 1e-3) is typeset as a math minus.
MINUS = re.compile(r"(?<![\w.])-(?=\d)")
PREAMBLE = (r"% ablate report: needs \usepackage{booktabs}; wrap in \resizebox{\linewidth}{!}{...} if too wide."
            "\n% * p < 0.05 after Holm's correction over the column; table.md says how to read the rest.")


def tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the report's symbols typeset."""
    return MINUS.sub("$-$", str(text).translate(SYMBOLS))


def latex_table(cells: pd.DataFrame, groups: pd.Series) -> str:
    """``cells`` (text, first two columns left-aligned) as a tabular, a rule wherever ``groups`` changes."""
    lines = [PREAMBLE, rf"\begin{{tabular}}{{ll{'r' * (cells.shape[1] - 2)}}}", r"\toprule",
             " & ".join(map(tex, cells.columns)) + r" \\", r"\midrule"]
    starts = groups.ne(groups.shift()).to_numpy()
    for i, row in enumerate(cells.itertuples(index=False)):
        if i and starts[i]:
            lines.append(r"\midrule")
        lines.append(" & ".join(map(tex, row)) + r" \\")
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", ""])
