"""The run directory and what every job shares about it: process set-up, CSV logs, reading back what a run wrote."""
