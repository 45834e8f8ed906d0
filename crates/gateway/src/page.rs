//! Paging of the list operations: `MaxItems` checked against the model's bounds, and a page
//! cut from the items after the caller's `Marker`, with the marker of the next page.

use nimbus_core::Error;

/// `MaxItems` when the caller gives none, for every list operation.
const DEFAULT_MAX_ITEMS: u32 = 50;

/// The page size `MaxItems` asks for (50 when absent), which must be between 1 and `max`.
pub(crate) fn size(max_items: Option<u32>, max: u32) -> Result<usize, Error> {
    let max_items = max_items.unwrap_or(DEFAULT_MAX_ITEMS.min(max));
    if !(1..=max).contains(&max_items) {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{max_items}' at 'maxItems' failed to satisfy \
             constraint: Member must have value between 1 and {max}"
        )));
    }
    Ok(max_items as usize)
}

/// Keeps the first `page` of `items` and returns the next page's marker (the last kept item's,
/// by `marker_of`) when more followed.
pub(crate) fn cut<T>(
    items: &mut Vec<T>,
    page: usize,
    marker_of: impl Fn(&T) -> String,
) -> Option<String> {
    if items.len() <= page {
        return None;
    }
    items.truncate(page);
    items.last().map(marker_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_items_is_bounded() {
        assert_eq!(size(None, 10_000).unwrap(), 50);
        assert_eq!(size(None, 20).unwrap(), 20);
        assert_eq!(size(Some(7), 50).unwrap(), 7);
        assert!(size(Some(0), 50).is_err());
        assert!(size(Some(51), 50).is_err());
    }

    #[test]
    fn a_page_is_cut_with_the_next_marker() {
        let mut items = vec![1, 2, 3];
        assert_eq!(cut(&mut items, 2, |n| n.to_string()), Some("2".to_owned()));
        assert_eq!(items, [1, 2]);
        assert_eq!(cut(&mut items, 2, |n| n.to_string()), None);
    }
}
