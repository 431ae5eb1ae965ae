from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """`?page=N&page_size=M` (at most 200): each page costs the same few queries whatever its size."""

    page_size_query_param = "page_size"
    max_page_size = 200
