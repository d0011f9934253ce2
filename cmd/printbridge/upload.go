package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/printbridge/printbridge/bridge"
)

func init() {
	register("upload", "send a G-code file to an edge's files folder over the bus, in parts, and select or print it", runUpload)
}

// defaultPartBytes is the G-code per part of an upload. Its JSON form,
// with each line feed escaped, stays under bridge.MaxCommandSize for any
// text whose lines average more than a few bytes.
const defaultPartBytes = 32 << 10

// runUpload sends a file as command/file add messages in parts, because
// one message holds at most bridge.MaxCommandSize bytes. It waits for
// the edge's reply to each part before it sends the next, so the parts
// arrive in order and a rejection stops the upload at once.
func runUpload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	fs.Usage = func() { printCommandUsage(fs) }
	var bus busOptions
	bus.register(fs)
	printerID := fs.String("printer", "", "printer id of the edge that receives the file")
	file := fs.String("file", "", "the G-code file to send")
	path := fs.String("path", "", "path of the file in the edge's files folder, such as prints/cube.gcode (default: the file's name)")
	selectFile := fs.Bool("select", false, "select the file once the edge has it")
	printFile := fs.Bool("print", false, "start printing the file once the edge has it")
	partBytes := fs.Int("part-bytes", defaultPartBytes, "bytes of G-code per message; lower it for a broker with a smaller maximum message size")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the edge's reply to each part")
	if err := parseFlags(fs, args, stderr, true); err != nil {
		return err
	}
	if err := bridge.ValidatePrinterID(*printerID); err != nil {
		return fmt.Errorf("--printer: %w", err)
	}
	if *file == "" {
		return errors.New("missing --file: printbridge upload --printer ID --file FILE [--path NAME] [--print]")
	}
	if *partBytes < 1024 || *partBytes > bridge.MaxCommandSize {
		return fmt.Errorf("invalid --part-bytes %d: give 1024 to %d", *partBytes, bridge.MaxCommandSize)
	}
	content, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	if len(content) == 0 {
		return fmt.Errorf("%s is empty; there is nothing to print", *file)
	}
	if !utf8.Valid(content) {
		return fmt.Errorf("%s is not UTF-8 text at byte %d; a G-code file is text, so check that this is the sliced file", *file, invalidUTF8At(content))
	}
	target := *path
	if target == "" {
		target = filepath.Base(*file)
	}
	template := bridge.Command{Action: bridge.FileAdd, Path: target, Source: "printbridge upload"}
	parts, err := splitUpload(content, *partBytes, template)
	if err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bus.clientID = fmt.Sprintf("printbridge-upload-%d", time.Now().UnixNano())
	b, err := connectBus(ctx, bus, log)
	if err != nil {
		return err
	}
	defer b.Close()
	// The ids of this run's parts start with idPrefix, so the replies of
	// other clients of the printer cannot fill the channel.
	// Random, so that two senders of one path never share an id, which
	// would let the second's part 1 restart the first's upload.
	var random [8]byte
	if _, err := rand.Read(random[:]); err != nil {
		return err
	}
	uploadID := "upload-" + hex.EncodeToString(random[:])
	idPrefix := uploadID + "-"
	replies := make(chan bridge.Reply, 16)
	if err := b.SubscribeReplies(ctx, *printerID, func(data []byte) {
		var r bridge.Reply
		if json.Unmarshal(data, &r) == nil && r.Final() && strings.HasPrefix(r.ID, idPrefix) {
			select {
			case replies <- r:
			default:
			}
		}
	}); err != nil {
		return err
	}

	var last bridge.Reply
	for i, part := range parts {
		cmd := template
		cmd.ID = fmt.Sprintf("%s%d", idPrefix, i+1)
		data := string(part)
		cmd.Data, cmd.Part, cmd.Parts, cmd.UploadID = &data, i+1, len(parts), uploadID
		if i == len(parts)-1 {
			cmd.Select, cmd.Print = *selectFile, *printFile
		}
		msg, err := encodeCommand(cmd)
		if err != nil {
			return err
		}
		if last, err = sendCommand(ctx, b, *printerID, bridge.CommandFile, msg, cmd.ID, replies, *timeout); err != nil {
			if i > 0 && i < len(parts)-1 {
				dropUpload(b, *printerID, target, uploadID, idPrefix, replies, *timeout, log)
			}
			return fmt.Errorf("part %d of %d: %w", i+1, len(parts), err)
		}
	}
	fmt.Fprintf(stdout, "uploaded %s to printer %s: %s\n", *file, *printerID, strings.Join(last.Lines, "; "))
	return nil
}

// dropUpload sends the edge a remove of the upload after a part failed,
// so that the upload does not hold one of the edge's 4 upload slots
// until it has been idle for 10 minutes. A failure is only logged,
// because the upload failed anyway.
func dropUpload(b bridge.Bus, printer, path, uploadID, idPrefix string, replies <-chan bridge.Reply, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := bridge.Command{ID: idPrefix + "drop", Action: bridge.FileRemove, Path: path, UploadID: uploadID, Source: "printbridge upload"}
	msg, err := encodeCommand(cmd)
	if err == nil {
		_, err = sendCommand(ctx, b, printer, bridge.CommandFile, msg, cmd.ID, replies, timeout)
	}
	if err != nil {
		log.Warn("dropping the failed upload on the edge failed; the edge drops it after 10 minutes without a part", "upload_id", uploadID, "error", err)
	}
}

// sendCommand publishes the command msg of kind and waits up to timeout
// for the final reply with id among replies, which must be done.
func sendCommand(ctx context.Context, b bridge.Bus, printer, kind string, msg []byte, id string, replies <-chan bridge.Reply, timeout time.Duration) (bridge.Reply, error) {
	if err := b.PublishCommand(ctx, printer, kind, msg); err != nil {
		return bridge.Reply{}, fmt.Errorf("publish: %w", err)
	}
	wait := time.NewTimer(timeout)
	defer wait.Stop()
	for {
		select {
		case r := <-replies:
			if r.ID != id {
				continue
			}
			if r.Status != bridge.ReplyDone {
				return r, fmt.Errorf("edge %s: %s", r.Status, r.Reason)
			}
			return r, nil
		case <-wait.C:
			return bridge.Reply{}, fmt.Errorf("no reply from the edge of printer %q within %s; is it running and connected to this broker?", printer, timeout)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// The caller's deadline, such as that of publish's
				// --timeout, ran out first.
				return bridge.Reply{}, fmt.Errorf("no reply from the edge of printer %q within %s; is it running and connected to this broker?", printer, timeout)
			}
			return bridge.Reply{}, ctx.Err()
		}
	}
}

// splitUpload cuts content into parts of at most partBytes bytes, each
// ending after a line feed where the part has one, else at a character
// boundary, so no part splits a line or a UTF-8 character needlessly. A
// part whose message would be over bridge.MaxCommandSize (a file of
// mostly escaped characters) is cut again in halves.
func splitUpload(content []byte, partBytes int, template bridge.Command) ([][]byte, error) {
	var parts [][]byte
	for start := 0; start < len(content); {
		size := partBytes
		for {
			end := min(start+size, len(content))
			if end < len(content) {
				if nl := bytes.LastIndexByte(content[start:end], '\n'); nl >= 0 {
					end = start + nl + 1
				} else {
					for end > start && !utf8.RuneStart(content[end]) {
						end--
					}
				}
			}
			if end == start {
				return nil, errors.New("cannot split the file into parts: a character is longer than a part")
			}
			fits, err := partFits(template, content[start:end])
			if err != nil {
				return nil, err
			}
			if fits {
				parts = append(parts, content[start:end])
				start = end
				break
			}
			size = (end - start) / 2
		}
	}
	if len(parts) > bridge.MaxUploadParts {
		return nil, fmt.Errorf("the file needs %d parts, over the maximum of %d", len(parts), bridge.MaxUploadParts)
	}
	return parts, nil
}

// partFits reports whether a message with part as its data stays within
// bridge.MaxCommandSize, with room for the largest part numbers, the
// select and print flags and the id.
func partFits(template bridge.Command, part []byte) (bool, error) {
	data := string(part)
	cmd := template
	cmd.ID = fmt.Sprintf("upload-%d-%d", int64(1)<<62, bridge.MaxUploadParts)
	cmd.UploadID = fmt.Sprintf("upload-%d", int64(1)<<62)
	cmd.Data, cmd.Part, cmd.Parts = &data, bridge.MaxUploadParts, bridge.MaxUploadParts
	cmd.Select, cmd.Print = true, true
	msg, err := encodeCommand(cmd)
	if err != nil {
		return false, err
	}
	return len(msg) <= bridge.MaxCommandSize, nil
}

// encodeCommand is json.Marshal without the escapes of <, > and &, which
// G-code comments use and which would make a part six times larger.
func encodeCommand(cmd bridge.Command) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(cmd); err != nil {
		return nil, fmt.Errorf("encode part %d: %w", cmd.Part, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// invalidUTF8At returns the offset of the first byte of content that is
// not part of valid UTF-8.
func invalidUTF8At(content []byte) int {
	for i := 0; i < len(content); {
		r, size := utf8.DecodeRune(content[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(content)
}
