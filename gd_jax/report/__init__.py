"""What every report shares: number formatting, markdown tables, figure style, and
writing report.md beside its figures."""
