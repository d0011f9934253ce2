package storage

import "github.com/printbridge/printbridge/bridge"

// Origin is the storage identifier of the local files folder in
// OctoPrint's payloads (storage and origin keys).
const Origin = "local"

// OctoPrint's file handling event names.
const (
	EventFileAdded                 = "FileAdded"
	EventFileRemoved               = "FileRemoved"
	EventFileMoved                 = "FileMoved"
	EventFolderAdded               = "FolderAdded"
	EventFolderRemoved             = "FolderRemoved"
	EventFolderMoved               = "FolderMoved"
	EventUpdatedFiles              = "UpdatedFiles"
	EventMetadataAnalysisStarted   = "MetadataAnalysisStarted"
	EventMetadataAnalysisFinished  = "MetadataAnalysisFinished"
	EventMetadataStatisticsUpdated = "MetadataStatisticsUpdated"
)

// The operation key of FileAdded and FileRemoved.
const (
	opAdd    = "add"
	opCopy   = "copy"
	opMove   = "move"
	opRemove = "remove"
)

// event is one event waiting to be sent.
type event struct {
	name    string
	payload bridge.Payload
}

// gcodeType is OctoPrint's type of a G-code file, a fresh slice per
// payload so that no consumer can change another's.
func gcodeType() []any { return []any{"machinecode", "gcode"} }

func fileEvent(name, p, operation string) event {
	return event{name, bridge.Payload{
		{Key: "storage", Value: Origin},
		{Key: "path", Value: p},
		{Key: "name", Value: nameOf(p)},
		{Key: "type", Value: gcodeType()},
		{Key: "operation", Value: operation},
	}}
}

func folderEvent(name, p string) event {
	return event{name, bridge.Payload{
		{Key: "storage", Value: Origin},
		{Key: "path", Value: p},
		{Key: "name", Value: nameOf(p)},
	}}
}

// fileMoveEvents are OctoPrint's events for a moved file, in its order.
func fileMoveEvents(src, dst string) []event {
	return []event{
		fileEvent(EventFileRemoved, src, opMove),
		fileEvent(EventFileAdded, dst, opMove),
		{EventFileMoved, bridge.Payload{
			{Key: "storage", Value: Origin},
			{Key: "source_path", Value: src},
			{Key: "source_name", Value: nameOf(src)},
			{Key: "source_type", Value: gcodeType()},
			{Key: "destination_path", Value: dst},
			{Key: "destination_name", Value: nameOf(dst)},
			{Key: "destination_type", Value: gcodeType()},
		}},
	}
}

// folderMoveEvents are OctoPrint's events for a moved folder, in its
// order.
func folderMoveEvents(src, dst string) []event {
	return []event{
		folderEvent(EventFolderRemoved, src),
		folderEvent(EventFolderAdded, dst),
		{EventFolderMoved, bridge.Payload{
			{Key: "storage", Value: Origin},
			{Key: "source_path", Value: src},
			{Key: "source_name", Value: nameOf(src)},
			{Key: "destination_path", Value: dst},
			{Key: "destination_name", Value: nameOf(dst)},
		}},
	}
}

func updatedFilesEvent() event {
	return event{EventUpdatedFiles, bridge.Payload{{Key: "type", Value: "printables"}}}
}

func analysisEvent(name, p string, result bridge.Payload) event {
	payload := bridge.Payload{
		{Key: "name", Value: nameOf(p)},
		{Key: "path", Value: p},
		{Key: "origin", Value: Origin},
	}
	if result != nil {
		payload = append(payload, bridge.Field{Key: "result", Value: result})
	}
	return event{name, payload}
}

func statisticsEvent(p string) event {
	return event{EventMetadataStatisticsUpdated, bridge.Payload{
		{Key: "storage", Value: Origin},
		{Key: "path", Value: p},
	}}
}
