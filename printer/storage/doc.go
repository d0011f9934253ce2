// Package storage is the edge's local files folder, OctoPrint's "local"
// storage: G-code files and folders under one directory, changed through
// the operations of Storage (Add, Move, Copy, Remove, Mkdir) or from
// outside (a copy over SSH, a file manager), and announced with
// OctoPrint's file handling events.
//
// Run watches the folder by polling the size, modification time and
// inode of every entry, every two seconds by default. It analyses each
// added file with printer/gcode in one background worker and caches the
// results in .printbridge/metadata.json inside the folder, so a restart
// does not analyse them again. Hidden entries and files without a G-code
// extension are not part of the storage.
//
// All methods are safe for concurrent use. Events leave one at a time,
// in the order of the changes, through Config.Emit.
package storage
