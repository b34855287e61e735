"""What a person reads: the HTML report, its figures and the heat-map panels."""
