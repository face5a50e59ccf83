# shellcheck shell=bash
# Sourced by the bench scripts: where a run keeps its spools and queues.

# bench_workdir NAME: a new directory for one bench run. With BENCH_TMPDIR it
# is made under that folder. Without it, it is a new top-level folder
# (/minimta-NAME.XXXXXX), because of how ext4 without a journal allocates inodes.
# That is this VM's file system.
#   - It skips every free inode freed in the last 60 s (360 s while that
#     inode-table block is dirty); see recently_deleted() in fs/ext4/ialloc.c.
#   - New files go into their folder's block group.
#   - So after a run deletes its spools (tens of thousands of files), every
#     file created in that group first scans past the deleted inodes.
#     Measured here: 13-28 us per create in a fresh group, 550-650 us in the
#     /var/tmp group after a day of bench runs.
#   - The kernel then counts that time against whichever server creates its
#     queue files there next.
# A new top-level folder gets a block group of its own (ext4's Orlov allocator
# spreads top-level folders), so both servers of a run start on equal terms, as
# they would on a journalled file system, where this scan does not exist.
bench_workdir() {
  if [ -n "${BENCH_TMPDIR:-}" ]; then
    mktemp -d "$BENCH_TMPDIR/minimta-$1.XXXXXX"
  else
    mktemp -d "/minimta-$1.XXXXXX"
  fi
}
