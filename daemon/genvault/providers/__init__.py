"""Provider adapters: one module per API. See :mod:`genvault.providers.base`."""
