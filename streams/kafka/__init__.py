"""The Kafka side: the Faust app and its batch seam, topics, producing, settings, metrics and
the embedded broker."""
