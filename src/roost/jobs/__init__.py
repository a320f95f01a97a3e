"""Batch jobs over image files: each job is one file, any engine runs it, one report writer records it.

| module | what it holds |
|---|---|
| ``orient.py`` | ``roost orient``: rotation decisions and the journaled fixes (``orient_files``) |
| ``predict.py`` | ``roost predict``: top-k classes (``predict_files``) |
| ``embed.py`` | ``roost embed``: embeddings, and their ``.npy`` export (``embed_files``, ``write_npy``) |
| ``base.py`` | run options, progress events, the ``Job`` base class, the summary |
| ``engine.py`` | the loop every engine shares; the local engine |
| ``ray.py`` | the Ray Data engine |
| ``inputs.py`` | inputs expanded, normalised and de-duplicated; special files as error rows |
| ``report.py`` | CSV / JSON lines / Parquet reports, durable every batch, read back for resume |
| ``journal.py`` | the fix journal that makes fixes crash-safe |
| ``model.py`` | the job's model: loaded once, on its device, precision and backend |
"""

from roost.jobs.embed import embed_files
from roost.jobs.orient import orient_files
from roost.jobs.predict import predict_files

__all__ = ["embed_files", "orient_files", "predict_files"]
