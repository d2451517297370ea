"""The guarded request path: every tool call passes through `guard.pipeline`.

Arguments checked, permission checked, the tool run, its answer masked and bounded; errors too."""
