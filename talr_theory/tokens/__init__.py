"""Token difficulty: the teacher-forced scanner (``scanner.scan_tokens``), s(θ) and summaries
(``stats``), and the one-call ``analysis.scan_dataset`` used by notebooks and the CLI."""
