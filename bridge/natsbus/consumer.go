package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Keys of the metadata that a worker sets on its durable consumer. Two
// groups and printers can derive the same consumer name (group "a" with
// printer "b_c", group "a_b" with printer "c"), and with the metadata the
// second worker finds the consumer taken instead of changing its filter. Consumer metadata needs
// nats-server 2.10 or later.
const (
	metadataGroup = "printbridge.group"
	// metadataPrinter is "" on a consumer of all printers.
	metadataPrinter = "printbridge.printer"
)

// ErrConsumerTaken is returned by SubscribeEvents on JetStream when the
// durable consumer that the group and printer name already serves other
// events, so that sharing it would split them between two groups.
var ErrConsumerTaken = errors.New("JetStream consumer name taken")

// consumerOwner is the worker group and the printer that a durable
// consumer serves.
type consumerOwner struct {
	// group is DefaultDurable for workers without a group.
	group   string
	printer string
}

func ownerOf(group, printer string) consumerOwner {
	if group == "" {
		group = DefaultDurable
	}
	return consumerOwner{group: group, printer: printer}
}

func (o consumerOwner) String() string {
	printer := "all printers"
	if o.printer != "" {
		printer = fmt.Sprintf("printer %q", o.printer)
	}
	return fmt.Sprintf("group %q, %s", o.group, printer)
}

func (o consumerOwner) metadata() map[string]string {
	return map[string]string{metadataGroup: o.group, metadataPrinter: o.printer}
}

// ensureConsumer creates the durable consumer of cfg, or updates it when it
// exists and serves owner. A consumer without printbridge metadata, made
// by an older printbridge or by another client, is taken over when it
// filters the same subject, and then gets the metadata.
//
// It does not rename or delete consumers: a worker that upgrades keeps its
// consumer and its position in the stream, where a new name would start a
// new consumer at the oldest event of the stream.
func (b *Bus) ensureConsumer(ctx context.Context, cfg jetstream.ConsumerConfig, owner consumerOwner) (jetstream.Consumer, error) {
	cfg.Metadata = owner.metadata()
	// Two tries, because a worker of the same group may create the
	// consumer between the lookup and the create.
	for try := 1; ; try++ {
		existing, err := b.js.Consumer(ctx, b.stream, cfg.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			// CreateConsumer, unlike CreateOrUpdateConsumer, fails on a
			// consumer that someone else created after the lookup, so
			// the next try checks its owner.
			consumer, err := b.js.CreateConsumer(ctx, b.stream, cfg)
			if errors.Is(err, jetstream.ErrConsumerExists) && try < 2 {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("create JetStream consumer %s on stream %s failed: %w", cfg.Durable, b.stream, err)
			}
			b.warnWithoutMetadata(consumer, owner)
			return consumer, nil
		case err != nil:
			return nil, fmt.Errorf("look up JetStream consumer %s on stream %s failed: %w", cfg.Durable, b.stream, err)
		}

		if err := b.checkConsumerOwner(existing.CachedInfo().Config, cfg, owner); err != nil {
			return nil, err
		}
		// JetStream rejects an update of the start of a consumer, which
		// resumeLegacy set when it created this one.
		cfg.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
		cfg.OptStartSeq = existing.CachedInfo().Config.OptStartSeq
		cfg.OptStartTime = existing.CachedInfo().Config.OptStartTime
		// NOTE: a consumer without metadata that two groups find at once
		// goes to the one that updates it last, because JetStream has no
		// compare-and-set for consumer configs. Once it has the metadata,
		// the other group's workers are rejected on their next start.
		consumer, err := b.js.UpdateConsumer(ctx, b.stream, cfg)
		if err != nil {
			return nil, fmt.Errorf("update JetStream consumer %s on stream %s failed: %w", cfg.Durable, b.stream, err)
		}
		b.warnWithoutMetadata(consumer, owner)
		return consumer, nil
	}
}

// warnWithoutMetadata logs once when the server dropped the consumer's
// metadata, as nats-server before 2.10 does. The owner check above then
// cannot tell two groups whose names map to one consumer name, and their
// workers share it without an error.
func (b *Bus) warnWithoutMetadata(consumer jetstream.Consumer, owner consumerOwner) {
	if _, ok := consumer.CachedInfo().Config.Metadata[metadataGroup]; ok {
		return
	}
	b.metadataWarning.Do(func() {
		b.log.Warn("the NATS server keeps no JetStream consumer metadata (it needs nats-server 2.10 or later), so two worker groups whose names map to one consumer name, such as a.b and a_b, would share it without an error; upgrade nats-server, or use group names without '_' and '.'",
			"server_version", b.nc.ConnectedServerVersion(), "consumer", consumer.CachedInfo().Name, "group", owner.group)
	})
}

// checkConsumerOwner returns an error wrapping ErrConsumerTaken when the
// existing consumer serves another group or printer than owner.
//
// A consumer with the metadata of owner may filter another subject: that
// is a worker whose topic base changed, and the update sets the new one.
// A consumer without the metadata is rejected when its filter differs,
// because then it was made for another printer, by a colliding group of
// an older printbridge or by another client. Taking it would move the
// other group's consumer to this worker's printer, which is the collision
// that the metadata prevents, so the user decides.
func (b *Bus) checkConsumerOwner(existing, want jetstream.ConsumerConfig, owner consumerOwner) error {
	group, hasOwner := existing.Metadata[metadataGroup]
	if hasOwner {
		other := consumerOwner{group: group, printer: existing.Metadata[metadataPrinter]}
		if other == owner {
			return nil
		}
		err := fmt.Errorf("%w: consumer %s on stream %s serves %s, and this worker (%s) maps to the same name; "+
			"choose a --group (printbridge.group) whose consumer name does not collide, e.g. one without '_' or '.'",
			ErrConsumerTaken, want.Durable, b.stream, other, owner)
		b.log.Error("JetStream consumer name taken by another worker group", "consumer", want.Durable,
			"owner_group", other.group, "owner_printer", other.printer, "group", owner.group, "printer", owner.printer)
		return err
	}
	if existing.FilterSubject == want.FilterSubject {
		return nil
	}
	err := fmt.Errorf("%w: consumer %s on stream %s has no printbridge owner and filters %q, not %q that this worker (%s) needs; "+
		"choose a --group (printbridge.group) whose consumer name does not collide, e.g. one without '_' or '.', "+
		"or delete the consumer (nats consumer rm %s %s) if no worker uses it",
		ErrConsumerTaken, want.Durable, b.stream, existing.FilterSubject, want.FilterSubject, owner, b.stream, want.Durable)
	b.log.Error("JetStream consumer without an owner filters other events", "consumer", want.Durable,
		"filter_subject", existing.FilterSubject, "want_filter_subject", want.FilterSubject,
		"group", owner.group, "printer", owner.printer)
	return err
}
