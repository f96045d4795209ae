"""onedb's library: the OpenNebula database (versions, upgrades, backups, fsck, purges)."""
