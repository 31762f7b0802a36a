"""Dev helper: build a notebook from a light 'percent' script (cells split on lines starting with '# %%').

    python scripts/nb.py notebooks/src/00_setup.py notebooks/00_setup.ipynb

'# %% [markdown]' starts a markdown cell (its lines lose their leading '# '); '# %% parameters' starts the
cell tagged `parameters`. Outputs are never written. The .py sources are not kept: the .ipynb is the source.
"""
import sys

import nbformat


def build(src: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    cells, kind, buf, tags = [], None, [], []

    def flush():
        if kind is None:
            return
        text = "\n".join(buf).strip("\n")
        if kind == "md":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            c = nbformat.v4.new_code_cell(text)
            if tags:
                c.metadata["tags"] = list(tags)
            cells.append(c)

    for line in src.splitlines():
        if line.startswith("# %%"):
            flush()
            head = line[4:].strip()
            kind = "md" if head.startswith("[markdown]") else "code"
            tags = ["parameters"] if head == "parameters" else []
            buf = []
        else:
            buf.append(line)
    flush()
    nb.cells = cells
    return nb


if __name__ == "__main__":
    nbformat.write(build(open(sys.argv[1]).read()), sys.argv[2])
