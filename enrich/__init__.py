"""enrich: depth enrichment of monocular video catalogues, streamed through Ray Data."""

__version__ = "0.1.0"
