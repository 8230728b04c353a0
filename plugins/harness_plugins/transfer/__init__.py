"""Transfer from a source task: fine-tuning, probes, bottleneck adapters and prompt tuning."""
