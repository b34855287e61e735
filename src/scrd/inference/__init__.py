"""The predict job: streamed scoring of image files into a CSV and heat maps, sharded across processes when asked."""
