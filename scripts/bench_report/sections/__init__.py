"""The report's numbered sections, one module each, in report order. Each
`write` adds its Markdown to the doc and its goals to the doc's list."""
