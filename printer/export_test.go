package printer

// OpenSerial is the default port opener, for tests of its locking.
var OpenSerial = openSerial
