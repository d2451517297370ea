"""The tool catalogue: one module per domain. `tools.catalogue.TOOL_MODULES` lists them."""
