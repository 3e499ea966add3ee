"""GPU health from NVML, read in a helper process so a hung driver cannot stall medic."""
