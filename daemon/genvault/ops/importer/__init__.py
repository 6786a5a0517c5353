"""``genvault import``: adopt media the user downloaded earlier as archived files.

* :mod:`.files`    the folder, the files' names, JSON sidecars and bytes (no database,
                   no network);
* :mod:`.matching` which generation and which of its files a local file is, never a guess;
* :mod:`.job`      the run: size checks with the provider, the copy into storage, the
                   commit, the report.
"""

from genvault.ops.importer.job import (
    FileReport,
    ImportReport,
    import_folder,
    import_runtime,
)
from genvault.ops.importer.matching import Verdict

__all__ = ["FileReport", "ImportReport", "Verdict", "import_folder", "import_runtime"]
