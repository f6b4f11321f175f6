package postgres

import "context"

// PruneNow prunes the change table as the listener does every minute.
func PruneNow(ctx context.Context, s *Store) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return s.prune(ctx, c.Conn())
}
