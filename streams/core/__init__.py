"""Pure per-customer logic and the per-batch pipeline: no Kafka, Faust or Prometheus."""
